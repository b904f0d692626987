package dev.calcrpc.client.tcp;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.common.util.concurrent.ListenableFuture;
import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import dev.calcrpc.calculator.v1.CalculateRequest;
import dev.calcrpc.calculator.v1.CalculateResponse;
import dev.calcrpc.calculator.v1.CalculateStreamRequest;
import dev.calcrpc.calculator.v1.CalculateStreamResponse;
import dev.calcrpc.calculator.v1.CalculatorServiceGrpc;
import dev.calcrpc.calculator.v1.EvaluateRequest;
import dev.calcrpc.calculator.v1.EvaluateResponse;
import dev.calcrpc.calculator.v1.Operator;
import dev.calcrpc.client.ErrorDetails;
import dev.calcrpc.client.security.BearerToken;
import dev.calcrpc.client.wire.Frame;
import dev.calcrpc.client.wire.FrameKind;
import dev.calcrpc.client.wire.RequestHeader;
import dev.calcrpc.client.wire.Wire;
import io.grpc.ConnectivityState;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.xerial.snappy.Snappy;

/**
 * The raw TCP channel driven by the generated stubs, against fake servers over in-memory pipes:
 * the frames it writes, byte for byte, and what the stubs see of the frames it reads.
 */
@Timeout(30)
class TcpChannelTest {
  static final CalculateRequest ADD_2_3 =
      CalculateRequest.newBuilder().setOperator(Operator.OPERATOR_ADD).setLhs(2).setRhs(3).build();

  static byte[] response(long v) {
    return CalculateResponse.newBuilder().setResult(v).build().toByteArray();
  }

  final LinkedBlockingQueue<FakeServer> servers = new LinkedBlockingQueue<>();
  FakeServer s;
  TcpChannel ch;
  CalculatorServiceGrpc.CalculatorServiceFutureStub calc;

  TcpChannel.Builder fakeChannel() {
    return fakeChannel(servers);
  }

  static TcpChannel.Builder fakeChannel(LinkedBlockingQueue<FakeServer> servers) {
    return TcpChannel.forTarget("localhost:1")
        .connector(FakeServer.connector(servers))
        .backoff(new Backoff(Duration.ofMillis(10), 1.6, 0.2, Duration.ofMillis(50)))
        .keepAlive(false);
  }

  @BeforeEach
  void setUp() {
    s = new FakeServer();
    servers.add(s);
    ch = fakeChannel().build();
    calc = CalculatorServiceGrpc.newFutureStub(ch);
  }

  @AfterEach
  void tearDown() throws InterruptedException {
    ch.shutdownNow();
    assertTrue(ch.awaitTermination(5, TimeUnit.SECONDS), "channel did not terminate");
    s.close();
    servers.forEach(FakeServer::close);
  }

  static <T> T await(ListenableFuture<T> f) throws Exception {
    try {
      return f.get(10, TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      throw (Exception) e.getCause();
    }
  }

  static StatusRuntimeException failure(ListenableFuture<?> f) {
    return assertThrows(StatusRuntimeException.class, () -> await(f));
  }

  @Test
  void requestsMatchProtocolExamples() throws Exception {
    // PROTOCOL.md section 7: call 1 binds ref 1, call 3 uses the ref alone
    ListenableFuture<CalculateResponse> f1 = calc.calculate(ADD_2_3);
    s.expectRaw("00000038 02 02 00000001 01 2a" + hex("/calculator.v1.CalculatorService/Calculate") + "080110021803");
    s.send(FrameKind.RESPONSE, 0, 1, response(5));
    assertEquals(5, await(f1).getResult());
    calc.calculate(ADD_2_3);
    s.expectRaw("0000000d 02 00 00000002 01 080110021803");
  }

  @Test
  void metadataMatchesVector() throws Exception {
    // testdata/wire/vectors.json "request_metadata": an x-request-id header
    Metadata md = new Metadata();
    md.put(Metadata.Key.of("x-request-id", Metadata.ASCII_STRING_MARSHALLER), "r1");
    calc.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(md)).calculate(ADD_2_3);
    Frame req = s.next();
    assertEquals(Wire.FLAG_METHOD_NAME | Wire.FLAG_METADATA, req.flags());
    RequestHeader h = RequestHeader.parse(req.flags(), req.payload()).header();
    assertEquals(1, h.metadata().size());
    assertEquals("x-request-id", h.metadata().get(0).key());
    assertEquals("r1", h.metadata().get(0).valueString());
  }

  @Test
  void tokenGoesWithEveryCall() throws Exception {
    FakeServer t = new FakeServer();
    TcpChannel tch = fakeChannel(new LinkedBlockingQueue<>(List.of(t))).token("s3cret").build();
    try {
      CalculatorServiceGrpc.CalculatorServiceFutureStub stub = CalculatorServiceGrpc.newFutureStub(tch);
      stub.calculate(ADD_2_3);
      Frame a = t.next();
      assertEquals(List.of("authorization=Bearer s3cret"), pairs(a));
      // per-call credentials add theirs; the stream's REQUEST carries them too
      stub.withCallCredentials(new BearerToken("other")).calculate(ADD_2_3);
      assertEquals(List.of("authorization=Bearer s3cret", "authorization=Bearer other"), pairs(t.next()));
      CalculatorServiceGrpc.newStub(tch).calculateStream(new Collect());
      assertEquals(List.of("authorization=Bearer s3cret"), pairs(t.next()));
    } finally {
      tch.shutdownNow();
      t.close();
    }
  }

  static List<String> pairs(Frame req) throws Exception {
    List<String> out = new ArrayList<>();
    for (RequestHeader.Entry e : RequestHeader.parse(req.flags(), req.payload()).header().metadata()) {
      out.add(e.key() + "=" + e.valueString());
    }
    return out;
  }

  @Test
  void tokenRefusedInPlaintextToARemoteHost() {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
        () -> TcpChannel.forTarget("127.0.0.1:4000,192.0.2.1:4000").token("t").build());
    assertTrue(e.getMessage().contains("refusing to send the token (CALC_TOKEN) in plaintext to 192.0.2.1"), e.getMessage());
    TcpChannel.forTarget("localhost:4000,[::1]:4000").token("t").build().shutdownNow(); // loopback: allowed
  }

  @Test
  void deadlineIsSentAndEnforcedLocally() throws Exception {
    ListenableFuture<CalculateResponse> f = calc.withDeadlineAfter(300, TimeUnit.MILLISECONDS).calculate(ADD_2_3);
    Frame req = s.next();
    assertEquals(Wire.FLAG_METHOD_NAME | Wire.FLAG_DEADLINE, req.flags());
    RequestHeader h = RequestHeader.parse(req.flags(), req.payload()).header();
    assertTrue(h.timeoutMicros() > 0 && h.timeoutMicros() <= 300_000, "budget " + h.timeoutMicros());
    assertEquals(Status.Code.DEADLINE_EXCEEDED, failure(f).getStatus().getCode());
    Frame cancel = s.next();
    assertEquals(FrameKind.CANCEL, cancel.kind());
    assertEquals(req.id(), cancel.id());
    s.send(FrameKind.STATUS, 0, req.id(), com.google.rpc.Status.newBuilder().setCode(4).build().toByteArray()); // late: ignored
    // the connection is still fine
    ListenableFuture<CalculateResponse> g = calc.calculate(ADD_2_3);
    Frame r2 = s.next();
    s.send(FrameKind.RESPONSE, 0, r2.id(), response(5));
    assertEquals(5, await(g).getResult());
  }

  @Test
  void statusDetailsAreReadableAsOnGrpc() throws Exception {
    com.google.rpc.Status st = com.google.rpc.Status.newBuilder().setCode(3).setMessage("division by zero: 1 / 0")
        .addDetails(Any.pack(BadRequest.newBuilder().addFieldViolations(
            BadRequest.FieldViolation.newBuilder().setField("rhs").setDescription("division by zero")).build()))
        .addDetails(Any.pack(ErrorInfo.newBuilder().setReason("DIVISION_BY_ZERO").setDomain("calc").build()))
        .build();
    ListenableFuture<CalculateResponse> f = calc.calculate(ADD_2_3);
    s.send(FrameKind.STATUS, 0, s.next().id(), st.toByteArray());
    StatusRuntimeException e = failure(f);
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    assertEquals("division by zero: 1 / 0", e.getStatus().getDescription());
    assertEquals(st, StatusProto.fromThrowable(e));
    ErrorDetails d = ErrorDetails.of(e);
    assertEquals(List.of("rhs"), d.violationFields());
    assertEquals("DIVISION_BY_ZERO", d.reason());
    // a blocking stub throws the same
    CompletableFuture<StatusRuntimeException> thrown = CompletableFuture.supplyAsync(() -> assertThrows(StatusRuntimeException.class,
        () -> CalculatorServiceGrpc.newBlockingStub(ch).calculate(ADD_2_3)));
    s.send(FrameKind.STATUS, 0, s.next().id(), st.toByteArray());
    assertEquals(st, StatusProto.fromThrowable(thrown.get(5, TimeUnit.SECONDS)));
  }

  @Test
  void compressionBothWays() throws Exception {
    String expr = "1 + ".repeat(99) + "1";
    String big = "7".repeat(5000);
    ListenableFuture<EvaluateResponse> f = calc.evaluate(EvaluateRequest.newBuilder().setExpression(expr).build());
    Frame req = s.next();
    assertEquals(Wire.FLAG_METHOD_NAME | Wire.FLAG_COMPRESSED, req.flags());
    int off = RequestHeader.parse(req.flags(), req.payload()).messageOffset();
    byte[] msg = Wire.decodeMessage(req.payload(), off, req.payload().length - off, true, Wire.DEFAULT_MAX_MESSAGE_SIZE);
    assertEquals(expr, EvaluateRequest.parseFrom(msg).getExpression());
    byte[] resp = Snappy.compress(EvaluateResponse.newBuilder().setResult(big).setExact(true).build().toByteArray());
    s.send(FrameKind.RESPONSE, Wire.FLAG_COMPRESSED, req.id(), resp);
    assertEquals(big, await(f).getResult());

    // below the threshold: sent as is
    calc.evaluate(EvaluateRequest.newBuilder().setExpression("1 + 1").build());
    assertEquals(0, s.next().flags());
  }

  @Test
  void snappyBombFailsTheCallNotTheConnection() throws Exception {
    ListenableFuture<CalculateResponse> f = calc.calculate(ADD_2_3);
    long id = s.next().id();
    s.send(FrameKind.RESPONSE, Wire.FLAG_COMPRESSED, id, new byte[] {(byte) 0x80, (byte) 0x80, (byte) 0x80, (byte) 0x80, 0x04, 0x00, 0x61});
    assertEquals(Status.Code.RESOURCE_EXHAUSTED, failure(f).getStatus().getCode());
    ListenableFuture<CalculateResponse> g = calc.calculate(ADD_2_3);
    long id2 = s.next().id();
    s.send(FrameKind.RESPONSE, Wire.FLAG_COMPRESSED, id2, new byte[] {0x0a, (byte) 0xff, (byte) 0xff, (byte) 0xff});
    assertEquals(Status.Code.INTERNAL, failure(g).getStatus().getCode());
    assertEquals(ConnectivityState.READY, ch.getState(false));
    assertEquals(1, ch.readyCount());
  }

  @Test
  void callsAboveGoAwayAreRetriedOnANewConnection() throws Exception {
    FakeServer second = new FakeServer();
    List<ListenableFuture<CalculateResponse>> fs = new ArrayList<>();
    for (int i = 0; i < 3; i++) {
      fs.add(calc.calculate(ADD_2_3));
      s.next();
    }
    servers.add(second);
    s.send(FrameKind.GOAWAY, 0, 0, Wire.goAwayPayload(1, com.google.rpc.Status.newBuilder().setMessage("server shutting down").build()));
    // calls 2 and 3 were not processed: the channel makes them again on the new connection
    Frame r1 = second.next();
    Frame r2 = second.next();
    assertEquals(List.of(1L, 2L), List.of(r1.id(), r2.id()));
    assertTrue(r1.has(Wire.FLAG_METHOD_NAME), "the new connection binds the method again");
    second.send(FrameKind.RESPONSE, 0, 1, response(6));
    second.send(FrameKind.RESPONSE, 0, 2, response(7));
    assertEquals(13, await(fs.get(1)).getResult() + await(fs.get(2)).getResult()); // in either order
    assertFalse(fs.get(0).isDone()); // accepted by the old server: answered there
    s.send(FrameKind.RESPONSE, 0, 1, response(5));
    assertEquals(5, await(fs.get(0)).getResult());
    // new calls go to the new connection
    ListenableFuture<CalculateResponse> g = calc.calculate(ADD_2_3);
    assertEquals(3, second.next().id());
    second.send(FrameKind.RESPONSE, 0, 3, response(5));
    assertEquals(5, await(g).getResult());
    s.hangUp();
    second.close();
  }

  @Test
  void lostConnectionFailsUnavailableUnlessRetryIdempotent() throws Exception {
    ListenableFuture<CalculateResponse> f = calc.calculate(ADD_2_3);
    s.next();
    s.hangUp();
    StatusRuntimeException e = failure(f);
    assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
    assertTrue(e.getStatus().getDescription().startsWith("connection closed by the server"), e.getStatus().getDescription());

    FakeServer a = new FakeServer();
    FakeServer b = new FakeServer();
    LinkedBlockingQueue<FakeServer> mine = new LinkedBlockingQueue<>(List.of(a));
    TcpChannel idem = fakeChannel(mine).retryIdempotent(true)
        .retryBackoff(new Backoff(Duration.ofMillis(1), 1.6, 0.2, Duration.ofMillis(5))).build();
    try {
      ListenableFuture<CalculateResponse> g = CalculatorServiceGrpc.newFutureStub(idem).calculate(ADD_2_3);
      a.next();
      mine.add(b);
      a.hangUp(); // the server may have processed it: only retryIdempotent makes it again
      Frame again = b.next();
      assertEquals(FrameKind.REQUEST, again.kind());
      b.send(FrameKind.RESPONSE, 0, again.id(), response(5));
      assertEquals(5, await(g).getResult());
    } finally {
      idem.shutdownNow();
      a.close();
      b.close();
    }
  }

  @Test
  void attemptsAreBounded() throws Exception {
    List<FakeServer> all = new ArrayList<>();
    LinkedBlockingQueue<FakeServer> mine = new LinkedBlockingQueue<>();
    TcpChannel idem = fakeChannel(mine).retryIdempotent(true).maxAttempts(3)
        .retryBackoff(new Backoff(Duration.ofMillis(1), 1.6, 0.2, Duration.ofMillis(5))).build();
    try {
      ListenableFuture<CalculateResponse> g = CalculatorServiceGrpc.newFutureStub(idem).withWaitForReady().calculate(ADD_2_3);
      for (int i = 0; i < 3; i++) { // every attempt's connection is lost
        FakeServer f = new FakeServer();
        all.add(f);
        mine.add(f);
        assertEquals(FrameKind.REQUEST, f.next().kind());
        f.hangUp();
      }
      assertEquals(Status.Code.UNAVAILABLE, failure(g).getStatus().getCode());
    } finally {
      idem.shutdownNow();
      all.forEach(FakeServer::close);
    }
  }

  @Test
  void streamSendsMessagesHalfClosesAndCancels() throws Exception {
    Collect got = new Collect();
    StreamObserver<CalculateStreamRequest> st = CalculatorServiceGrpc.newStub(ch).calculateStream(got);
    CalculateStreamRequest req = CalculateStreamRequest.newBuilder().setId(7)
        .setCalculation(CalculateRequest.newBuilder().setOperator(Operator.OPERATOR_MULTIPLY).setLhs(6).setRhs(7)).build();
    st.onNext(req);
    st.onCompleted();
    // testdata/wire/vectors.json "stream_client", with call id 1 instead of 5 and method ref 1 instead of 3
    s.expectRaw("0000003802020000000101302f63616c63756c61746f722e76312e43616c63756c61746f72536572766963652f43616c63756c61746553747265616d");
    s.expectRaw("00000010 03 00 00000001 08071206080310061807");
    s.expectRaw("00000006040000000001");
    s.send(FrameKind.MESSAGE, 0, 1, CalculateStreamResponse.newBuilder().setId(7).setResult(42).build().toByteArray());
    s.send(FrameKind.STATUS, 0, 1, new byte[0]);
    assertNull(got.end.get(5, TimeUnit.SECONDS));
    assertEquals(42, got.responses.get(0).getResult());

    Collect got2 = new Collect();
    ClientCallStreamObserver<CalculateStreamRequest> st2 =
        (ClientCallStreamObserver<CalculateStreamRequest>) CalculatorServiceGrpc.newStub(ch).calculateStream(got2);
    assertEquals(2, s.next().id());
    st2.cancel("enough", null);
    s.expectRaw("00000006070000000002");
    assertEquals(Status.Code.CANCELLED, Status.fromThrowable(got2.end.get(5, TimeUnit.SECONDS)).getCode());
    s.send(FrameKind.STATUS, 0, 2, com.google.rpc.Status.newBuilder().setCode(1).build().toByteArray()); // late: ignored
  }

  @Test
  void streamMessagesWaitForRequestN() throws Exception {
    List<CalculateStreamResponse> got = new ArrayList<>();
    CompletableFuture<Status> end = new CompletableFuture<>();
    io.grpc.ClientCall<CalculateStreamRequest, CalculateStreamResponse> call =
        ch.newCall(CalculatorServiceGrpc.getCalculateStreamMethod(), io.grpc.CallOptions.DEFAULT);
    call.start(new io.grpc.ClientCall.Listener<>() {
      @Override public void onMessage(CalculateStreamResponse m) { synchronized (got) { got.add(m); } }
      @Override public void onClose(Status status, Metadata trailers) { end.complete(status); }
    }, new Metadata());
    call.halfClose();
    assertEquals(FrameKind.REQUEST, s.next().kind());
    assertEquals(FrameKind.HALF_CLOSE, s.next().kind());
    for (int i = 1; i <= 3; i++) {
      s.send(FrameKind.MESSAGE, 0, 1, CalculateStreamResponse.newBuilder().setId(i).build().toByteArray());
    }
    s.send(FrameKind.STATUS, 0, 1, new byte[0]);
    call.request(2);
    // the STATUS waits behind the third message, which waits for demand
    for (int i = 0; i < 500 && got.size() < 2; i++) {
      Thread.sleep(10);
    }
    synchronized (got) {
      assertEquals(2, got.size());
    }
    assertFalse(end.isDone());
    call.request(1);
    assertEquals(Status.Code.OK, end.get(5, TimeUnit.SECONDS).getCode());
    assertEquals(3, got.size());
  }

  @Test
  void cancelledFutureSendsCancel() throws Exception {
    ListenableFuture<CalculateResponse> f = calc.calculate(ADD_2_3);
    long id = s.next().id();
    assertTrue(f.cancel(true));
    Frame cancel = s.next();
    assertEquals(FrameKind.CANCEL, cancel.kind());
    assertEquals(id, cancel.id());
  }

  @Test
  void tooLargeRequestFailsLocally() throws Exception {
    String huge = "1".repeat(Wire.DEFAULT_MAX_MESSAGE_SIZE + 1);
    assertEquals(Status.Code.RESOURCE_EXHAUSTED, failure(calc.evaluate(EvaluateRequest.newBuilder().setExpression(huge).build())).getStatus().getCode());
    calc.calculate(ADD_2_3);
    assertArrayEquals(new byte[] {0, 0, 0, 1}, java.util.Arrays.copyOfRange(s.nextRaw(), 6, 10)); // id 1: nothing was sent before
  }

  @Test
  void noServerFailsFastOrWaitsForReady() throws Exception {
    LinkedBlockingQueue<FakeServer> mine = new LinkedBlockingQueue<>();
    TcpChannel none = fakeChannel(mine).build(); // every attempt fails: TRANSIENT_FAILURE
    try {
      for (int i = 0; i < 500 && none.getState(false) != ConnectivityState.TRANSIENT_FAILURE; i++) {
        Thread.sleep(10);
      }
      assertEquals(ConnectivityState.TRANSIENT_FAILURE, none.getState(false));
      StatusRuntimeException e = failure(CalculatorServiceGrpc.newFutureStub(none).calculate(ADD_2_3));
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
      assertTrue(e.getStatus().getDescription().startsWith("no server ready: connect localhost:1: no fake server"), e.getStatus().getDescription());
      // with waitForReady it waits until its deadline...
      StatusRuntimeException w = failure(CalculatorServiceGrpc.newFutureStub(none).withWaitForReady()
          .withDeadlineAfter(200, TimeUnit.MILLISECONDS).calculate(ADD_2_3));
      assertEquals(Status.Code.DEADLINE_EXCEEDED, w.getStatus().getCode());
      // ...or until a server is there
      ListenableFuture<CalculateResponse> g = CalculatorServiceGrpc.newFutureStub(none).withWaitForReady()
          .withDeadlineAfter(10, TimeUnit.SECONDS).calculate(ADD_2_3);
      FakeServer late = new FakeServer();
      mine.add(late);
      Frame req = late.next();
      late.send(FrameKind.RESPONSE, 0, req.id(), response(5));
      assertEquals(5, await(g).getResult());
      late.close();
    } finally {
      none.shutdownNow();
    }
  }

  @Test
  void shutdownLetsCallsFinishThenTerminates() throws Exception {
    ListenableFuture<CalculateResponse> f = calc.calculate(ADD_2_3);
    long id = s.next().id();
    ch.shutdown();
    assertEquals(ConnectivityState.SHUTDOWN, ch.getState(false));
    assertEquals(Status.Code.UNAVAILABLE, failure(calc.calculate(ADD_2_3)).getStatus().getCode());
    assertFalse(ch.isTerminated());
    s.send(FrameKind.RESPONSE, 0, id, response(5));
    assertEquals(5, await(f).getResult());
    assertTrue(ch.awaitTermination(5, TimeUnit.SECONDS));
  }

  static String hex(String s) {
    return java.util.HexFormat.of().formatHex(s.getBytes(java.nio.charset.StandardCharsets.UTF_8));
  }

  /** Collects a stream's responses and its end (null for OK). */
  static final class Collect implements StreamObserver<CalculateStreamResponse> {
    final List<CalculateStreamResponse> responses = new java.util.concurrent.CopyOnWriteArrayList<>();
    final CompletableFuture<Throwable> end = new CompletableFuture<>();

    @Override
    public void onNext(CalculateStreamResponse r) {
      responses.add(r);
    }

    @Override
    public void onError(Throwable t) {
      end.complete(t);
    }

    @Override
    public void onCompleted() {
      end.complete(null);
    }
  }
}
