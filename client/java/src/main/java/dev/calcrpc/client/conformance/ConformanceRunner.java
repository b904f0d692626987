package dev.calcrpc.client.conformance;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.protobuf.Message;
import dev.calcrpc.calculator.v1.CalculateRequest;
import dev.calcrpc.calculator.v1.CalculateResponse;
import dev.calcrpc.calculator.v1.CalculateStreamRequest;
import dev.calcrpc.calculator.v1.CalculateStreamResponse;
import dev.calcrpc.calculator.v1.CalculatorServiceGrpc;
import dev.calcrpc.calculator.v1.EvaluateRequest;
import dev.calcrpc.calculator.v1.Operator;
import dev.calcrpc.client.ErrorDetails;
import dev.calcrpc.client.grpc.CalcGrpc;
import dev.calcrpc.client.grpc.SnappyCodec;
import dev.calcrpc.client.security.TlsOptions;
import dev.calcrpc.client.tcp.TcpChannel;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The conformance runner: every case of testdata/conformance/cases.json over gRPC and raw TCP (the
 * unary cases also over gRPC with grpc-encoding snappy), with the same generated stubs on both
 * (raw TCP through {@link TcpChannel}), and every vector of testdata/wire/vectors.json through the
 * raw TCP library's decoder. Prints one line per failure and then "N passed, N failed"; exits 1 if
 * any failed.
 *
 * <p>Usage: {@code ConformanceRunner --grpc HOST:PORT --tcp HOST:PORT [--cases FILE] [--vectors FILE]
 * [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME] [--token TOKEN]}.
 * Any --tls option connects both transports over TLS (raw TCP: TLS 1.3, ALPN calc/1); the token
 * (default: env CALC_TOKEN, which ps cannot show) is sent as "authorization: Bearer TOKEN" with
 * every call.
 */
public final class ConformanceRunner {
  static final String GRPC = "grpc";
  static final String GRPC_SNAPPY = "grpc+snappy";
  static final String TCP = "tcp";
  static final String WIRE = "wire-vectors";

  private static final long CALL_TIMEOUT_S = 10;

  private final ManagedChannel grpcChannel;
  private final ManagedChannel snappyChannel;
  private final SnappyCodec snappy = new SnappyCodec();
  private final TcpChannel tcpChannel;
  private int passed;
  private int failed;
  /** The gRPC endpoint's status per error case, to check the raw TCP one is the same. */
  private final Map<String, com.google.rpc.Status> grpcStatuses = new HashMap<>();

  private ConformanceRunner(String grpcTarget, String tcpTarget, TlsOptions tls, String token) {
    this.grpcChannel = CalcGrpc.channel(grpcTarget, tls, token);
    this.snappyChannel = CalcGrpc.snappyChannel(grpcTarget, snappy, tls, token);
    this.tcpChannel = TcpChannel.forTarget(tcpTarget).tls(tls).token(token).build();
  }

  public static void main(String[] args) throws Exception {
    String grpc = null;
    String tcp = null;
    String cases = "../../testdata/conformance/cases.json";
    String vectors = "../../testdata/wire/vectors.json";
    TlsOptions tls = TlsOptions.NONE;
    java.nio.file.Path cert = null;
    java.nio.file.Path key = null;
    String token = System.getenv("CALC_TOKEN");
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      if (a.equals("--tls")) {
        tls = tls.withTls(true);
        continue;
      }
      if (i + 1 >= args.length) {
        usage(a.startsWith("--") ? a + " needs a value" : "unknown argument " + a);
      }
      String val = args[++i];
      switch (a) {
        case "--grpc" -> grpc = val;
        case "--tcp" -> tcp = val;
        case "--cases" -> cases = val;
        case "--vectors" -> vectors = val;
        case "--tls-ca" -> tls = tls.withCa(java.nio.file.Path.of(val));
        case "--tls-cert" -> cert = java.nio.file.Path.of(val);
        case "--tls-key" -> key = java.nio.file.Path.of(val);
        case "--tls-server-name" -> tls = tls.withServerName(val);
        case "--token" -> token = val;
        default -> usage("unknown argument " + a);
      }
    }
    if (grpc == null || tcp == null) {
      usage("--grpc and --tcp are required");
    }
    if ((cert == null) != (key == null)) {
      usage("--tls-cert and --tls-key go together");
    }
    if (cert != null) {
      tls = tls.withCert(cert, key);
    }
    ConformanceRunner r;
    try {
      r = new ConformanceRunner(grpc, tcp, tls, token);
    } catch (IllegalArgumentException e) {
      usage(e.getMessage());
      return;
    }
    int exit;
    try {
      r.runVectors(Path.of(vectors));
      r.runCases(Path.of(cases));
    } finally {
      r.shutdown();
    }
    System.out.println("grpc+snappy: " + r.snappy.compressedCount() + " messages sent snappy-compressed, "
        + r.snappy.decompressedCount() + " received snappy-compressed");
    System.out.println(r.passed + " passed, " + r.failed + " failed");
    exit = r.failed == 0 ? 0 : 1;
    System.exit(exit);
  }

  private static void usage(String why) {
    System.err.println("ConformanceRunner: " + why);
    System.err.println("usage: ConformanceRunner --grpc HOST:PORT --tcp HOST:PORT [--cases FILE] [--vectors FILE]\n"
        + "         [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME] [--token TOKEN (default: env CALC_TOKEN)]");
    System.exit(2);
  }

  private void shutdown() throws InterruptedException {
    for (ManagedChannel ch : List.of(grpcChannel, snappyChannel, tcpChannel)) {
      ch.shutdownNow();
    }
    for (ManagedChannel ch : List.of(grpcChannel, snappyChannel, tcpChannel)) {
      ch.awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private void record(String name, String transport, String why) {
    if (why == null) {
      passed++;
    } else {
      failed++;
      System.out.println("FAIL " + name + " [" + transport + "]: " + why.replace('\n', ' '));
    }
  }

  private static JsonObject readJson(Path p) throws IOException {
    return JsonParser.parseString(Files.readString(p)).getAsJsonObject();
  }

  // ------------------------------------------------------------------ vectors

  private void runVectors(Path file) throws IOException {
    JsonArray vs = readJson(file).getAsJsonArray("vectors");
    if (vs.isEmpty()) {
      record("vectors", WIRE, "no vectors in " + file);
    }
    for (JsonElement e : vs) {
      JsonObject v = e.getAsJsonObject();
      String why;
      try {
        why = VectorChecker.check(v);
      } catch (RuntimeException ex) {
        why = "checker threw " + ex;
      }
      record(VectorChecker.str(v, "name", "?"), WIRE, why);
    }
  }

  // ------------------------------------------------------------------ cases

  private void runCases(Path file) throws IOException {
    JsonArray cs = readJson(file).getAsJsonArray("cases");
    if (cs.isEmpty()) {
      record("cases", "-", "no cases in " + file);
    }
    for (JsonElement e : cs) {
      JsonObject c = e.getAsJsonObject();
      String name = VectorChecker.str(c, "name", "?");
      String kind = VectorChecker.str(c, "kind", "");
      List<String> transports = kind.equals("unary") ? List.of(GRPC, GRPC_SNAPPY, TCP) : List.of(GRPC, TCP);
      for (String t : transports) {
        String why;
        try {
          why = runCase(c, kind, t);
        } catch (Exception | AssertionError ex) {
          why = "runner threw " + ex;
        }
        record(name, t, why);
      }
    }
  }

  /** The channel of transport t: raw TCP, gRPC, or gRPC able to send snappy. */
  private io.grpc.Channel channel(String t) {
    return switch (t) {
      case TCP -> tcpChannel;
      case GRPC_SNAPPY -> snappyChannel;
      default -> grpcChannel;
    };
  }

  private String runCase(JsonObject c, String kind, String t) throws Exception {
    return switch (kind) {
      case "unary" -> unary(c, t);
      case "stream" -> stream(c, t);
      case "stream_generated" -> streamGenerated(c, t);
      case "stream_deadline" -> streamDeadline(c, t);
      case "stream_cancel" -> streamCancel(c, t);
      case "concurrent" -> concurrent(c, t);
      default -> "unknown case kind \"" + kind + "\"";
    };
  }

  // ------------------------------------------------------------------ unary

  private String unary(JsonObject c, String t) throws Exception {
    String rpc = VectorChecker.str(c, "rpc", "");
    Protos.MethodInfo m = Protos.METHODS_BY_SHORT_NAME.get(rpc);
    if (m == null || m.type() != io.grpc.MethodDescriptor.MethodType.UNARY) {
      return "unknown unary rpc " + rpc;
    }
    Message req = Protos.fromJson(m.request(), c.get("request"));
    long compressedBefore = snappy.compressedCount();
    Message resp = null;
    Throwable err = null;
    try {
      resp = call(rpc, req, t);
    } catch (StatusRuntimeException e) {
      err = e;
    }
    String why = checkUnary(c, m, resp, err, t);
    if (why == null && t.equals(GRPC_SNAPPY) && snappy.compressedCount() == compressedBefore) {
      why = "the request was not sent with grpc-encoding snappy";
    }
    return why;
  }

  private String checkUnary(JsonObject c, Protos.MethodInfo m, Message resp, Throwable err, String t) throws Exception {
    if (c.has("response")) {
      if (err != null) {
        return "got error " + ErrorDetails.of(err) + ", want response " + c.get("response");
      }
      Message want = Protos.fromJson(m.response(), c.get("response"));
      return resp.equals(want) ? null : "response " + Protos.toJson(resp) + ", want " + Protos.toJson(want);
    }
    if (!c.has("error")) {
      return "case has neither response nor error";
    }
    if (err == null) {
      return "got response " + Protos.toJson(resp) + ", want error " + c.get("error");
    }
    ErrorDetails d = ErrorDetails.of(err);
    String why = checkError(c.getAsJsonObject("error"), d);
    if (why != null) {
      return why;
    }
    String name = VectorChecker.str(c, "name", "");
    if (t.equals(GRPC)) {
      grpcStatuses.put(name, d.status());
    } else if (grpcStatuses.containsKey(name) && !grpcStatuses.get(name).equals(d.status())) {
      return "status differs from the gRPC endpoint's: " + Protos.toJson(d.status()) + " vs gRPC " + Protos.toJson(grpcStatuses.get(name));
    }
    return null;
  }

  /** One unary call, with the same generated blocking stub on every transport. */
  private Message call(String rpc, Message req, String t) {
    CalculatorServiceGrpc.CalculatorServiceBlockingStub stub = CalculatorServiceGrpc
        .newBlockingStub(channel(t))
        .withDeadlineAfter(CALL_TIMEOUT_S, TimeUnit.SECONDS);
    if (t.equals(GRPC_SNAPPY)) {
      stub = stub.withCompression(SnappyCodec.NAME);
    }
    return switch (rpc) {
      case "Calculate" -> stub.calculate((CalculateRequest) req);
      case "Evaluate" -> stub.evaluate((EvaluateRequest) req);
      default -> throw new IllegalArgumentException(rpc);
    };
  }

  /** Checks code, reason, field, offset and message as the cases file's "about" defines them. */
  private static String checkError(JsonObject want, ErrorDetails d) {
    List<String> problems = new ArrayList<>();
    String code = VectorChecker.str(want, "code", "");
    if (!d.code().name().equals(code)) {
      problems.add("code " + d.code() + ", want " + code);
    }
    if (want.has("reason") && !d.reason().equals(want.get("reason").getAsString())) {
      problems.add("reason \"" + d.reason() + "\", want \"" + want.get("reason").getAsString() + "\"");
    }
    if (want.has("field") && !d.violationFields().contains(want.get("field").getAsString())) {
      problems.add("BadRequest fields " + d.violationFields() + ", want \"" + want.get("field").getAsString() + "\"");
    }
    if (want.has("offset") && !Objects.equals(d.errorMetadata("offset"), want.get("offset").getAsString())) {
      problems.add("ErrorInfo offset " + d.errorMetadata("offset") + ", want " + want.get("offset").getAsString());
    }
    if (want.has("message") && !d.message().equals(want.get("message").getAsString())) {
      problems.add("message \"" + d.message() + "\", want \"" + want.get("message").getAsString() + "\"");
    }
    return problems.isEmpty() ? null : String.join("; ", problems) + " (got " + d + ")";
  }

  // ------------------------------------------------------------------ streams

  /** Collects a stream's responses and its end. */
  static final class Collector implements StreamObserver<CalculateStreamResponse> {
    final List<CalculateStreamResponse> responses = new ArrayList<>();
    final CompletableFuture<Throwable> done = new CompletableFuture<>(); // null = OK
    final CountDownLatch first = new CountDownLatch(1);

    @Override
    public synchronized void onNext(CalculateStreamResponse r) {
      responses.add(r);
      first.countDown();
    }

    @Override
    public void onError(Throwable t) {
      done.complete(t);
      first.countDown();
    }

    @Override
    public void onCompleted() {
      done.complete(null);
      first.countDown();
    }

    synchronized List<CalculateStreamResponse> snapshot() {
      return new ArrayList<>(responses);
    }

    /** Waits for the end: null for OK, else the error; throws TimeoutException. */
    Throwable await(long seconds) throws InterruptedException, ExecutionException, TimeoutException {
      return done.get(seconds, TimeUnit.SECONDS);
    }
  }

  /** Opens CalculateStream on transport t; timeoutMs &lt;= 0 for the default safety deadline. */
  private StreamObserver<CalculateStreamRequest> openStream(String t, long timeoutMs, Collector out) {
    long ms = timeoutMs > 0 ? timeoutMs : TimeUnit.SECONDS.toMillis(3 * CALL_TIMEOUT_S);
    return CalculatorServiceGrpc.newStub(channel(t)).withDeadlineAfter(ms, TimeUnit.MILLISECONDS).calculateStream(out);
  }

  private static void cancel(StreamObserver<CalculateStreamRequest> requests) {
    if (requests instanceof ClientCallStreamObserver<?> s) {
      s.cancel("cancelled by the conformance runner", null);
    } else {
      throw new IllegalStateException("cannot cancel " + requests.getClass());
    }
  }

  private String stream(JsonObject c, String t) throws Exception {
    List<CalculateStreamRequest> reqs = new ArrayList<>();
    for (JsonElement e : c.getAsJsonArray("requests")) {
      reqs.add(Protos.fromJson(CalculateStreamRequest.getDefaultInstance(), e));
    }
    List<CalculateStreamResponse> want = new ArrayList<>();
    for (JsonElement e : c.getAsJsonArray("responses")) {
      want.add(Protos.fromJson(CalculateStreamResponse.getDefaultInstance(), e));
    }
    return runStream(t, reqs, want);
  }

  private String streamGenerated(JsonObject c, String t) throws Exception {
    int count = c.get("count").getAsInt();
    Operator op = Operator.valueOf(c.get("operator").getAsString());
    long rhs = Long.parseLong(c.get("rhs").getAsString());
    if (op != Operator.OPERATOR_MULTIPLY && op != Operator.OPERATOR_ADD && op != Operator.OPERATOR_SUBTRACT) {
      return "runner cannot compute expected results for " + op;
    }
    List<CalculateStreamRequest> reqs = new ArrayList<>();
    List<CalculateStreamResponse> want = new ArrayList<>();
    for (long i = 1; i <= count; i++) {
      reqs.add(CalculateStreamRequest.newBuilder().setId(i)
          .setCalculation(CalculateRequest.newBuilder().setOperator(op).setLhs(i).setRhs(rhs)).build());
      long result = switch (op) {
        case OPERATOR_MULTIPLY -> Math.multiplyExact(i, rhs);
        case OPERATOR_ADD -> Math.addExact(i, rhs);
        default -> Math.subtractExact(i, rhs);
      };
      want.add(CalculateStreamResponse.newBuilder().setId(i).setResult(result).build());
    }
    return runStream(t, reqs, want);
  }

  /** Sends every request before reading (the reader runs on its own), half-closes, compares. */
  private String runStream(String t, List<CalculateStreamRequest> reqs, List<CalculateStreamResponse> want) throws Exception {
    Collector out = new Collector();
    StreamObserver<CalculateStreamRequest> in = openStream(t, 0, out);
    for (CalculateStreamRequest r : reqs) {
      in.onNext(r);
    }
    in.onCompleted();
    Throwable end;
    try {
      end = out.await(3 * CALL_TIMEOUT_S);
    } catch (TimeoutException e) {
      cancel(in);
      return "stream did not end within " + 3 * CALL_TIMEOUT_S + " s (" + out.snapshot().size() + " responses)";
    }
    List<CalculateStreamResponse> got = out.snapshot();
    if (end != null) {
      return "stream ended with " + ErrorDetails.of(end) + " after " + got.size() + " responses, want OK";
    }
    if (got.size() != want.size()) {
      return got.size() + " responses, want " + want.size();
    }
    for (int i = 0; i < want.size(); i++) {
      if (!got.get(i).equals(want.get(i))) {
        return "response " + i + " " + Protos.toJson(got.get(i)) + ", want " + Protos.toJson(want.get(i));
      }
    }
    return null;
  }

  private String streamDeadline(JsonObject c, String t) throws Exception {
    long timeoutMs = c.get("timeout_ms").getAsLong();
    String wantCode = c.getAsJsonObject("error").get("code").getAsString();
    Collector out = new Collector();
    long start = System.nanoTime();
    StreamObserver<CalculateStreamRequest> in = openStream(t, timeoutMs, out);
    Throwable end;
    try {
      end = out.await(TimeUnit.MILLISECONDS.toSeconds(timeoutMs) + CALL_TIMEOUT_S);
    } catch (TimeoutException e) {
      cancel(in);
      return "stream did not end";
    }
    long tookMs = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
    if (end == null) {
      return "stream ended OK, want " + wantCode;
    }
    Status.Code code = Status.fromThrowable(end).getCode();
    if (!code.name().equals(wantCode)) {
      return "stream ended with " + ErrorDetails.of(end) + ", want " + wantCode;
    }
    if (tookMs + 5 < timeoutMs) {
      return "stream ended with " + code + " after " + tookMs + " ms, before its " + timeoutMs + " ms deadline";
    }
    if (!out.snapshot().isEmpty()) {
      return "got " + out.snapshot().size() + " responses on a stream that sent nothing";
    }
    return null;
  }

  private String streamCancel(JsonObject c, String t) throws Exception {
    String wantCode = c.getAsJsonObject("error").get("code").getAsString();
    Collector out = new Collector();
    StreamObserver<CalculateStreamRequest> in = openStream(t, 0, out);
    in.onNext(CalculateStreamRequest.newBuilder().setId(1)
        .setCalculation(CalculateRequest.newBuilder().setOperator(Operator.OPERATOR_ADD).setLhs(1).setRhs(1)).build());
    if (!out.first.await(CALL_TIMEOUT_S, TimeUnit.SECONDS)) {
      cancel(in);
      return "no response to the first request";
    }
    List<CalculateStreamResponse> got = out.snapshot();
    CalculateStreamResponse want = CalculateStreamResponse.newBuilder().setId(1).setResult(2).build();
    if (got.isEmpty() || !got.get(0).equals(want)) {
      Throwable early = out.done.getNow(null);
      return early != null ? "stream ended early with " + ErrorDetails.of(early)
          : "first response " + (got.isEmpty() ? "none" : Protos.toJson(got.get(0))) + ", want " + Protos.toJson(want);
    }
    cancel(in);
    Throwable end;
    try {
      end = out.await(CALL_TIMEOUT_S);
    } catch (TimeoutException e) {
      return "stream did not end after cancel";
    }
    if (end == null) {
      return "stream ended OK after cancel, want " + wantCode;
    }
    Status.Code code = Status.fromThrowable(end).getCode();
    return code.name().equals(wantCode) ? null : "stream ended with " + ErrorDetails.of(end) + ", want " + wantCode;
  }

  // ------------------------------------------------------------------ concurrent

  private String concurrent(JsonObject c, String t) throws Exception {
    int count = c.get("count").getAsInt();
    List<Future<CalculateResponse>> futures = new ArrayList<>(count);
    CalculatorServiceGrpc.CalculatorServiceFutureStub stub = CalculatorServiceGrpc.newFutureStub(channel(t))
        .withDeadlineAfter(3 * CALL_TIMEOUT_S, TimeUnit.SECONDS);
    for (long i = 1; i <= count; i++) {
      CalculateRequest req = CalculateRequest.newBuilder().setOperator(Operator.OPERATOR_ADD).setLhs(i).setRhs(i).build();
      futures.add(stub.calculate(req));
    }
    int bad = 0;
    String firstBad = null;
    for (int i = 0; i < count; i++) {
      long n = i + 1;
      String why;
      try {
        Future<CalculateResponse> f = futures.get(i);
        CalculateResponse r = f.get(3 * CALL_TIMEOUT_S, TimeUnit.SECONDS);
        why = r.getResult() == 2 * n ? null : "call " + n + ": result " + r.getResult() + ", want " + 2 * n;
      } catch (ExecutionException e) {
        why = "call " + n + ": " + ErrorDetails.of(e.getCause());
      } catch (StatusRuntimeException e) {
        why = "call " + n + ": " + ErrorDetails.of(e);
      } catch (TimeoutException e) {
        why = "call " + n + ": no answer";
      }
      if (why != null) {
        bad++;
        if (firstBad == null) {
          firstBad = why;
        }
      }
    }
    return bad == 0 ? null : bad + " of " + count + " calls failed; first: " + firstBad;
  }
}
