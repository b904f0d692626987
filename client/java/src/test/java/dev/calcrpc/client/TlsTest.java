package dev.calcrpc.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.calcrpc.calculator.v1.CalculateRequest;
import dev.calcrpc.calculator.v1.CalculateStreamRequest;
import dev.calcrpc.calculator.v1.CalculateStreamResponse;
import dev.calcrpc.calculator.v1.CalculatorServiceGrpc;
import dev.calcrpc.calculator.v1.EvaluateRequest;
import dev.calcrpc.calculator.v1.Operator;
import dev.calcrpc.client.grpc.CalcGrpc;
import dev.calcrpc.client.security.BearerToken;
import dev.calcrpc.client.security.Hosts;
import dev.calcrpc.client.security.Pem;
import dev.calcrpc.client.security.TlsOptions;
import dev.calcrpc.client.tcp.TcpCallException;
import dev.calcrpc.client.tcp.TcpChannel;
import dev.calcrpc.client.tcp.TcpConnection;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLServerSocket;
import javax.net.ssl.SSLSocket;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * TLS, mutual TLS and bearer tokens on both transports, against a real calcd started with
 * --tls-cert/--tls-key, --tls-client-ca and --auth-tokens (and a plaintext one), with development
 * certificates from tools/devcerts. Every refusal must come within a bounded time with its exact
 * status code and a message that says why; none may hang.
 */
@Timeout(120)
class TlsTest {
  static final CalculateRequest ADD = CalculateRequest.newBuilder().setOperator(Operator.OPERATOR_ADD).setLhs(2).setRhs(3).build();
  /** No refusal may take longer than this (a hang guard; they take milliseconds). */
  static final Duration BOUND = Duration.ofSeconds(10);

  static Path certs;
  static Path otherCa;
  static String token;
  static Calcd tls;
  static Calcd plain;

  @BeforeAll
  static void start() throws Exception {
    certs = Calcd.certs();
    otherCa = Calcd.newCerts().resolve("ca.pem"); // a CA that did not sign calcd's certificate
    byte[] t = new byte[24];
    new SecureRandom().nextBytes(t);
    token = HexFormat.of().formatHex(t);
    String digest = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(token.getBytes(StandardCharsets.US_ASCII)));
    Path policy = Files.createTempFile(Calcd.ROOT.resolve("client/java/target"), "policy", ".json");
    Files.writeString(policy, "{\"principals\":[{\"name\":\"java-test\",\"token_sha256\":\"" + digest + "\",\"methods\":[\"*\"]}]}");
    tls = Calcd.start("--tls-cert", certs.resolve("server.pem").toString(), "--tls-key", certs.resolve("server-key.pem").toString(),
        "--tls-client-ca", certs.resolve("ca.pem").toString(), "--auth-tokens", policy.toString());
    plain = Calcd.start();
    // Warm up: the first TLS connection of each stack loads and seeds what it needs, which is not
    // what the refusal timings below are about.
    TcpChannel w = TcpChannel.forTarget(tls.tcp()).tls(mtls()).token(token).build();
    ManagedChannel g = CalcGrpc.channel(tls.grpc(), mtls(), token);
    try {
      CalculatorServiceGrpc.newBlockingStub(w).withDeadlineAfter(30, TimeUnit.SECONDS).calculate(ADD);
      CalculatorServiceGrpc.newBlockingStub(g).withDeadlineAfter(30, TimeUnit.SECONDS).calculate(ADD);
    } finally {
      w.shutdownNow();
      g.shutdownNow();
    }
  }

  @AfterAll
  static void stop() throws Exception {
    if (tls != null) {
      tls.close();
    }
    if (plain != null) {
      plain.close();
    }
  }

  static TlsOptions mtls() {
    return TlsOptions.NONE.withCa(certs.resolve("ca.pem")).withCert(certs.resolve("client.pem"), certs.resolve("client-key.pem"));
  }

  static TlsOptions caOnly() {
    return TlsOptions.NONE.withCa(certs.resolve("ca.pem"));
  }

  /** Runs f, which must end within BOUND; prints how long it took. */
  static <T> T bounded(String what, Supplier<T> f) {
    long start = System.nanoTime();
    T v = org.junit.jupiter.api.Assertions.assertTimeoutPreemptively(BOUND, f::get, what + " did not end in " + BOUND);
    System.out.printf("TlsTest: %s refused in %d ms%n", what, TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start));
    return v;
  }

  /** The status of one Calculate over a fresh raw TCP channel with these options. */
  static StatusRuntimeException tcpCall(String addr, TlsOptions t, String tok) {
    TcpChannel ch = TcpChannel.forTarget(addr).tls(t).token(tok).build();
    try {
      return assertThrows(StatusRuntimeException.class,
          () -> CalculatorServiceGrpc.newBlockingStub(ch).withDeadlineAfter(BOUND.toMillis(), TimeUnit.MILLISECONDS).calculate(ADD));
    } finally {
      ch.shutdownNow();
    }
  }

  /** The status of one Calculate over a fresh gRPC channel with these options. */
  static StatusRuntimeException grpcCall(String addr, TlsOptions t, String tok) {
    ManagedChannel ch = CalcGrpc.channel(addr, t, tok);
    try {
      return assertThrows(StatusRuntimeException.class,
          () -> CalculatorServiceGrpc.newBlockingStub(ch).withDeadlineAfter(BOUND.toMillis(), TimeUnit.MILLISECONDS).calculate(ADD));
    } finally {
      ch.shutdownNow();
    }
  }

  /** One raw TCP connection attempt that must fail. */
  static TcpCallException tcpConnect(String addr, TlsOptions t) {
    return assertThrows(TcpCallException.class, () -> {
      SSLContext ctx = t.isOn() ? t.sslContext() : null;
      TcpConnection.connect(hostPort(addr), TcpConnection.Options.defaults().tls(ctx, t.serverName())).close();
    });
  }

  static InetSocketAddress hostPort(String addr) {
    int colon = addr.lastIndexOf(':');
    return new InetSocketAddress(addr.substring(0, colon), Integer.parseInt(addr.substring(colon + 1)));
  }

  static void assertStatus(Status.Code code, String inMessage, StatusRuntimeException e) {
    assertEquals(code, e.getStatus().getCode(), String.valueOf(e.getStatus()));
    String d = String.valueOf(e.getStatus().getDescription());
    assertTrue(d.contains(inMessage), "\"" + inMessage + "\" not in: " + d);
  }

  // ---------------------------------------------------------------- what works

  @Test
  void rawTcpOverMutualTlsWithToken() throws Exception {
    try (TcpConnection c = TcpConnection.connect(hostPort(tls.tcp()), TcpConnection.Options.defaults().tls(mtls().sslContext(), null))) {
      assertEquals("calc/1", c.applicationProtocol());
      assertEquals("TLSv1.3", c.sslSession().getProtocol());
      String subject = ((X509Certificate) c.sslSession().getPeerCertificates()[0]).getSubjectX500Principal().getName();
      assertTrue(subject.contains("CN=calc-dev-server"), subject);
    }
    TcpChannel ch = TcpChannel.forTarget(tls.tcp()).tls(mtls()).token(token).build();
    try {
      callEverything(ch);
    } finally {
      ch.shutdownNow();
    }
    // the builder's per-option setters and a server name that the certificate has
    TcpChannel named = TcpChannel.forTarget(tls.tcp()).tlsCa(certs.resolve("ca.pem")).tlsCert(certs.resolve("client.pem"))
        .tlsKey(certs.resolve("client-key.pem")).tlsServerName("localhost").token(token).build();
    try {
      assertEquals(5, CalculatorServiceGrpc.newBlockingStub(named).withDeadlineAfter(10, TimeUnit.SECONDS).calculate(ADD).getResult());
    } finally {
      named.shutdownNow();
    }
  }

  @Test
  void grpcOverMutualTlsWithToken() throws Exception {
    ManagedChannel ch = CalcGrpc.channel(tls.grpc(), mtls(), token);
    try {
      callEverything(ch);
    } finally {
      ch.shutdownNow();
    }
    ManagedChannel named = CalcGrpc.channel(tls.grpc(), mtls().withServerName("localhost"), token);
    try {
      assertEquals(5, CalculatorServiceGrpc.newBlockingStub(named).withDeadlineAfter(10, TimeUnit.SECONDS).calculate(ADD).getResult());
    } finally {
      named.shutdownNow();
    }
  }

  static void callEverything(io.grpc.Channel ch) throws Exception {
    CalculatorServiceGrpc.CalculatorServiceBlockingStub b = CalculatorServiceGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS);
    assertEquals(5, b.calculate(ADD).getResult());
    assertEquals("14", b.evaluate(EvaluateRequest.newBuilder().setExpression("2 * (3 + 4)").build()).getResult());
    List<CalculateStreamResponse> got = new ArrayList<>();
    CompletableFuture<Throwable> end = new CompletableFuture<>();
    StreamObserver<CalculateStreamRequest> in = CalculatorServiceGrpc.newStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS)
        .calculateStream(new StreamObserver<>() {
          @Override public void onNext(CalculateStreamResponse r) { synchronized (got) { got.add(r); } }
          @Override public void onError(Throwable t) { end.complete(t); }
          @Override public void onCompleted() { end.complete(null); }
        });
    for (int i = 1; i <= 3; i++) {
      in.onNext(CalculateStreamRequest.newBuilder().setId(i)
          .setCalculation(CalculateRequest.newBuilder().setOperator(Operator.OPERATOR_MULTIPLY).setLhs(i).setRhs(7)).build());
    }
    in.onCompleted();
    assertEquals(null, end.get(10, TimeUnit.SECONDS));
    synchronized (got) {
      assertEquals(List.of(7L, 14L, 21L), got.stream().map(CalculateStreamResponse::getResult).toList());
    }
  }

  // ---------------------------------------------------------------- tokens

  @Test
  void missingTokenIsUnauthenticated() {
    assertStatus(Status.Code.UNAUTHENTICATED, "", bounded("raw TCP without a token", () -> tcpCall(tls.tcp(), mtls(), null)));
    assertStatus(Status.Code.UNAUTHENTICATED, "", bounded("gRPC without a token", () -> grpcCall(tls.grpc(), mtls(), null)));
  }

  @Test
  void badTokenIsUnauthenticated() {
    assertStatus(Status.Code.UNAUTHENTICATED, "invalid token", bounded("raw TCP with a bad token", () -> tcpCall(tls.tcp(), mtls(), "not-the-token")));
    assertStatus(Status.Code.UNAUTHENTICATED, "invalid token", bounded("gRPC with a bad token", () -> grpcCall(tls.grpc(), mtls(), "not-the-token")));
  }

  @Test
  void tokenRefusedInPlaintextToARemoteHost() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> CalcGrpc.channel("192.0.2.1:50051", TlsOptions.NONE, "t"));
    assertTrue(e.getMessage().contains("refusing to send the token (CALC_TOKEN) in plaintext to 192.0.2.1"), e.getMessage());
    assertThrows(IllegalArgumentException.class, () -> CalcGrpc.channel("dns:///calc.example.com:50051", TlsOptions.NONE, "t"));
    assertThrows(IllegalArgumentException.class, () -> TcpChannel.forTarget("calc.example.com:4000").token("t").build());
    CalcGrpc.channel("localhost:50051", TlsOptions.NONE, "t").shutdownNow(); // loopback: allowed
    CalcGrpc.channel("192.0.2.1:50051", TlsOptions.NONE.withTls(true), "t").shutdownNow(); // TLS: allowed
    TcpChannel.forTarget("192.0.2.1:4000").tls(true).token("t").build().shutdownNow();
    // and at call time: the credentials refuse a plaintext authority that is not loopback
    ManagedChannel ch = CalcGrpc.builder(plain.grpc(), TlsOptions.NONE, null).overrideAuthority("calc.example.com").build();
    try {
      StatusRuntimeException refused = assertThrows(StatusRuntimeException.class, () -> CalculatorServiceGrpc.newBlockingStub(ch)
          .withCallCredentials(new BearerToken("t")).withDeadlineAfter(10, TimeUnit.SECONDS).calculate(ADD));
      assertStatus(Status.Code.UNAUTHENTICATED, "refusing to send the token in plaintext to calc.example.com", refused);
    } finally {
      ch.shutdownNow();
    }
    assertTrue(Hosts.isLoopback("127.9.9.9") && Hosts.isLoopback("[::1]") && Hosts.isLoopback("localhost"));
    for (String h : List.of("localhost.example.com", "10.0.0.1", "0.0.0.0", "::", "", "999.0.0.1")) {
      assertTrue(!Hosts.isLoopback(h), h);
    }
    assertThrows(IllegalArgumentException.class, () -> new BearerToken("two\nlines"));
  }

  // ---------------------------------------------------------------- certificates

  @Test
  void wrongCaIsRefusedByTheClient() {
    TlsOptions other = TlsOptions.NONE.withCa(otherCa).withCert(certs.resolve("client.pem"), certs.resolve("client-key.pem"));
    assertStatus(Status.Code.UNAVAILABLE, "PKIX path", bounded("raw TCP, wrong CA", () -> tcpConnect(tls.tcp(), other)));
    assertStatus(Status.Code.UNAVAILABLE, "no server ready: TLS handshake with " + tls.tcp() + ": PKIX path",
        bounded("raw TCP channel, wrong CA", () -> tcpCall(tls.tcp(), other, token)));
    assertStatus(Status.Code.UNAVAILABLE, "", bounded("gRPC, wrong CA", () -> grpcCall(tls.grpc(), other, token)));
  }

  @Test
  void wrongServerNameIsRefusedByTheClient() {
    TlsOptions wrong = mtls().withServerName("calc.example.com");
    assertStatus(Status.Code.UNAVAILABLE, "No subject alternative DNS name matching calc.example.com",
        bounded("raw TCP, wrong server name", () -> tcpConnect(tls.tcp(), wrong)));
    assertStatus(Status.Code.UNAVAILABLE, "", bounded("gRPC, wrong server name", () -> grpcCall(tls.grpc(), wrong, token)));
  }

  @Test
  void missingClientCertificateIsRefusedByTheServer() {
    // TLS 1.3: the client's handshake completes; the server's alert comes on the first read
    assertStatus(Status.Code.UNAVAILABLE, "certificate_required", bounded("raw TCP, no client certificate", () -> tcpConnect(tls.tcp(), caOnly())));
    assertStatus(Status.Code.UNAVAILABLE, "certificate_required",
        bounded("raw TCP channel, no client certificate", () -> tcpCall(tls.tcp(), caOnly(), token)));
    assertStatus(Status.Code.UNAVAILABLE, "", bounded("gRPC, no client certificate", () -> grpcCall(tls.grpc(), caOnly(), token)));
  }

  @Test
  void plaintextToTheTlsPortIsRefused() {
    assertStatus(Status.Code.UNAVAILABLE, "this port requires TLS (1.3, ALPN calc/1)",
        bounded("raw TCP plaintext to TLS", () -> tcpConnect(tls.tcp(), TlsOptions.NONE)));
    assertStatus(Status.Code.UNAVAILABLE, "", bounded("gRPC plaintext to TLS", () -> grpcCall(tls.grpc(), TlsOptions.NONE, null)));
  }

  @Test
  void tlsToThePlaintextPortFails() {
    assertStatus(Status.Code.UNAVAILABLE, "TLS handshake with " + plain.tcp(), bounded("raw TCP TLS to plaintext", () -> tcpConnect(plain.tcp(), caOnly())));
    assertStatus(Status.Code.UNAVAILABLE, "", bounded("gRPC TLS to plaintext", () -> grpcCall(plain.grpc(), caOnly(), null)));
  }

  @Test
  void serverWithoutAlpnCalc1IsRefused() throws Exception {
    // A TLS server with calcd's certificate that selects no ALPN protocol: the client must refuse
    // it after the handshake, before sending the preface.
    KeyStore ks = KeyStore.getInstance("PKCS12");
    ks.load(null, null);
    ks.setKeyEntry("server", Pem.privateKey(certs.resolve("server-key.pem")), new char[0],
        Pem.certificates(certs.resolve("server.pem")).toArray(new X509Certificate[0]));
    KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
    kmf.init(ks, new char[0]);
    SSLContext sctx = SSLContext.getInstance("TLSv1.3");
    sctx.init(kmf.getKeyManagers(), null, null);
    try (SSLServerSocket server = (SSLServerSocket) sctx.getServerSocketFactory().createServerSocket(0, 1,
        java.net.InetAddress.getByName("127.0.0.1"))) {
      CompletableFuture<Integer> firstByte = CompletableFuture.supplyAsync(() -> {
        try (SSLSocket s = (SSLSocket) server.accept()) {
          s.setSoTimeout((int) BOUND.toMillis());
          InputStream in = s.getInputStream();
          return in.read(); // -1: the client closed without sending anything
        } catch (IOException e) {
          return -2;
        }
      });
      TcpCallException e = bounded("raw TCP to a server without ALPN", () -> tcpConnect("127.0.0.1:" + server.getLocalPort(), caOnly()));
      assertStatus(Status.Code.UNAVAILABLE, "did not agree to ALPN calc/1 over TLS (got \"\")", e);
      int b = firstByte.get(BOUND.toMillis(), TimeUnit.MILLISECONDS);
      assertTrue(b < 0, "the client sent the preface to a server without ALPN calc/1");
    }
  }

  // ---------------------------------------------------------------- files

  @Test
  void badFilesAreNamed() throws Exception {
    Path dir = Files.createTempDirectory(Calcd.ROOT.resolve("client/java/target"), "badpem");
    Path sec1 = dir.resolve("sec1.pem");
    Files.writeString(sec1, "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIA==\n-----END EC PRIVATE KEY-----\n");
    Path empty = dir.resolve("empty.pem");
    Files.writeString(empty, "nothing here\n");
    Path client = certs.resolve("client.pem");
    List<Object[]> cases = List.of(
        new Object[] {TlsOptions.NONE.withCert(client, sec1), "convert it with openssl pkcs8 -topk8 -nocrypt"},
        new Object[] {TlsOptions.NONE.withCert(client, certs.resolve("server-key.pem")), "is not the private key of the certificate in " + client},
        new Object[] {TlsOptions.NONE.withCert(client, null), "--tls-cert and --tls-key go together"},
        new Object[] {TlsOptions.NONE.withCa(empty), "no PEM certificate in it"},
        new Object[] {TlsOptions.NONE.withCa(dir.resolve("missing.pem")), "cannot read " + dir.resolve("missing.pem")});
    for (Object[] c : cases) {
      TlsOptions t = (TlsOptions) c[0];
      IOException e = assertThrows(IOException.class, t::sslContext, t.toString());
      assertTrue(e.getMessage().contains((String) c[1]), e.getMessage());
      IllegalArgumentException b = assertThrows(IllegalArgumentException.class, () -> TcpChannel.forTarget("127.0.0.1:1").tls(t).build());
      assertEquals(e.getMessage(), b.getMessage());
      assertThrows(IllegalArgumentException.class, () -> CalcGrpc.channel("127.0.0.1:1", t, null));
    }
    assertNotNull(mtls().sslContext());
  }
}
