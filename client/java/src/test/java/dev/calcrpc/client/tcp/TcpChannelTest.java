package dev.calcrpc.client.tcp;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Any;
import com.google.rpc.BadRequest;
import com.google.rpc.ErrorInfo;
import dev.calcrpc.calculator.v1.CalculateRequest;
import dev.calcrpc.calculator.v1.CalculateResponse;
import dev.calcrpc.calculator.v1.CalculateStreamRequest;
import dev.calcrpc.calculator.v1.CalculateStreamResponse;
import dev.calcrpc.calculator.v1.EvaluateRequest;
import dev.calcrpc.calculator.v1.EvaluateResponse;
import dev.calcrpc.calculator.v1.Operator;
import dev.calcrpc.client.ErrorDetails;
import dev.calcrpc.client.wire.Frame;
import dev.calcrpc.client.wire.FrameKind;
import dev.calcrpc.client.wire.RequestHeader;
import dev.calcrpc.client.wire.Wire;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.xerial.snappy.Snappy;

@Timeout(30)
class TcpChannelTest {
  static final CalculateRequest ADD_2_3 =
      CalculateRequest.newBuilder().setOperator(Operator.OPERATOR_ADD).setLhs(2).setRhs(3).build();

  static byte[] response(long v) {
    return CalculateResponse.newBuilder().setResult(v).build().toByteArray();
  }

  @Test
  void requestsMatchProtocolExamples() throws Exception {
    try (FakeServer s = new FakeServer(); CalcTcpClient c = CalcTcpClient.on(s.connect())) {
      TcpCallFuture<CalculateResponse> f1 = c.calculate(ADD_2_3);
      s.expectRaw("00000038 0202 00000001 01 2A" + hex("/calculator.v1.CalculatorService/Calculate") + "080110021803");
      TcpCallFuture<CalculateResponse> f2 = c.calculate(ADD_2_3);
      s.expectRaw("0000000D 0200 00000002 01 080110021803");
      // PROTOCOL.md: "answer to call 3" style, out of order: 2 first, then 1
      s.send(FrameKind.RESPONSE, 0, 2, response(5));
      assertEquals(5, f2.await().getResult());
      assertFalse(f1.isDone());
      s.send(FrameKind.RESPONSE, 0, 1, response(6));
      assertEquals(6, f1.await().getResult());
      assertEquals(0, c.channel().activeCalls());
    }
  }

  @Test
  void metadataMatchesVector() throws Exception {
    Metadata md = new Metadata();
    md.put(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer t0ken");
    md.put(Metadata.Key.of("trace-bin", Metadata.BINARY_BYTE_MARSHALLER), new byte[] {0, 1});
    try (FakeServer s = new FakeServer(); CalcTcpClient c = CalcTcpClient.on(s.connect())) {
      c.withMetadata(md).calculate(ADD_2_3);
      // testdata/wire/vectors.json "calculate_metadata"
      s.expectRaw("00000061020a00000001012a2f63616c63756c61746f722e76312e43616c63756c61746f72536572766963652f43616c63756c617465"
          + "020d617574686f72697a6174696f6e0c4265617265722074306b656e0974726163652d62696e020001080110021803");
    }
  }

  @Test
  void deadlineIsSentAndEnforcedLocally() throws Exception {
    try (FakeServer s = new FakeServer(); CalcTcpClient c = CalcTcpClient.on(s.connect())) {
      TcpCallFuture<CalculateResponse> f = c.withDeadlineAfter(100, TimeUnit.MILLISECONDS).calculate(ADD_2_3);
      Frame req = s.next();
      assertEquals(Wire.FLAG_METHOD_NAME | Wire.FLAG_DEADLINE, req.flags());
      RequestHeader h = RequestHeader.parse(req.flags(), req.payload()).header();
      assertTrue(h.timeoutMicros() > 50_000 && h.timeoutMicros() <= 100_000, "budget " + h.timeoutMicros());
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, f::await);
      assertEquals(Status.Code.DEADLINE_EXCEEDED, e.getStatus().getCode());
      Frame cancel = s.next();
      assertEquals(FrameKind.CANCEL, cancel.kind());
      assertEquals(req.id(), cancel.id());
      s.send(FrameKind.STATUS, 0, req.id(), com.google.rpc.Status.newBuilder().setCode(4).build().toByteArray()); // late: ignored
      // the connection is still fine
      TcpCallFuture<CalculateResponse> g = c.calculate(ADD_2_3);
      Frame r2 = s.next();
      s.send(FrameKind.RESPONSE, 0, r2.id(), response(5));
      assertEquals(5, g.await().getResult());
    }
  }

  @Test
  void statusDetailsAreReadableAsOnGrpc() throws Exception {
    com.google.rpc.Status st = com.google.rpc.Status.newBuilder().setCode(3).setMessage("division by zero: 1 / 0")
        .addDetails(Any.pack(BadRequest.newBuilder().addFieldViolations(
            BadRequest.FieldViolation.newBuilder().setField("rhs").setDescription("division by zero")).build()))
        .addDetails(Any.pack(ErrorInfo.newBuilder().setReason("DIVISION_BY_ZERO").setDomain("calc").build()))
        .build();
    try (FakeServer s = new FakeServer(); CalcTcpClient c = CalcTcpClient.on(s.connect())) {
      TcpCallFuture<CalculateResponse> f = c.calculate(ADD_2_3);
      s.send(FrameKind.STATUS, 0, s.next().id(), st.toByteArray());
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, f::await);
      assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
      assertEquals("division by zero: 1 / 0", e.getStatus().getDescription());
      assertEquals(st, StatusProto.fromThrowable(e));
      ErrorDetails d = ErrorDetails.of(e);
      assertEquals(List.of("rhs"), d.violationFields());
      assertEquals("DIVISION_BY_ZERO", d.reason());
      assertFalse(((TcpCallException) e).isSafeToRetry());
    }
  }

  @Test
  void compressionBothWays() throws Exception {
    String expr = "1 + ".repeat(99) + "1";
    String big = "7".repeat(5000);
    try (FakeServer s = new FakeServer(); CalcTcpClient c = CalcTcpClient.on(s.connect())) {
      TcpCallFuture<EvaluateResponse> f = c.evaluate(EvaluateRequest.newBuilder().setExpression(expr).build());
      Frame req = s.next();
      assertEquals(Wire.FLAG_METHOD_NAME | Wire.FLAG_COMPRESSED, req.flags());
      int off = RequestHeader.parse(req.flags(), req.payload()).messageOffset();
      byte[] msg = Wire.decodeMessage(req.payload(), off, req.payload().length - off, true, Wire.DEFAULT_MAX_MESSAGE_SIZE);
      assertEquals(expr, EvaluateRequest.parseFrom(msg).getExpression());
      byte[] resp = Snappy.compress(EvaluateResponse.newBuilder().setResult(big).setExact(true).build().toByteArray());
      s.send(FrameKind.RESPONSE, Wire.FLAG_COMPRESSED, req.id(), resp);
      assertEquals(big, f.await().getResult());

      // below the threshold: sent as is
      c.evaluate(EvaluateRequest.newBuilder().setExpression("1 + 1").build());
      assertEquals(0, s.next().flags());
    }
  }

  @Test
  void snappyBombFailsTheCallNotTheConnection() throws Exception {
    try (FakeServer s = new FakeServer(); CalcTcpClient c = CalcTcpClient.on(s.connect())) {
      TcpCallFuture<CalculateResponse> f = c.calculate(ADD_2_3);
      long id = s.next().id();
      s.send(FrameKind.RESPONSE, Wire.FLAG_COMPRESSED, id, new byte[] {(byte) 0x80, (byte) 0x80, (byte) 0x80, (byte) 0x80, 0x04, 0x00, 0x61});
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class, f::await);
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
      TcpCallFuture<CalculateResponse> g = c.calculate(ADD_2_3);
      long id2 = s.next().id();
      s.send(FrameKind.RESPONSE, Wire.FLAG_COMPRESSED, id2, new byte[] {0x0a, (byte) 0xff, (byte) 0xff, (byte) 0xff});
      assertEquals(Status.Code.INTERNAL, assertThrows(StatusRuntimeException.class, g::await).getStatus().getCode());
      assertFalse(c.channel().isTerminated());
    }
  }

  @Test
  void goAwayFailsCallsAboveLastIdAsRetryable() throws Exception {
    try (FakeServer s = new FakeServer(); CalcTcpClient c = CalcTcpClient.on(s.connect())) {
      List<TcpCallFuture<CalculateResponse>> fs = new ArrayList<>();
      for (int i = 0; i < 3; i++) {
        fs.add(c.calculate(ADD_2_3));
        s.next();
      }
      s.send(FrameKind.GOAWAY, 0, 0, Wire.goAwayPayload(1, com.google.rpc.Status.newBuilder().setMessage("server shutting down").build()));
      for (int i = 1; i < 3; i++) {
        TcpCallException e = assertThrows(TcpCallException.class, fs.get(i)::await);
        assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
        assertTrue(e.isSafeToRetry());
      }
      assertFalse(fs.get(0).isDone());
      assertTrue(c.channel().isGoingAway());
      TcpCallException late = assertThrows(TcpCallException.class, () -> c.calculate(ADD_2_3).await());
      assertEquals(Status.Code.UNAVAILABLE, late.getStatus().getCode());
      assertTrue(late.isSafeToRetry());
      s.send(FrameKind.RESPONSE, 0, 1, response(5));
      assertEquals(5, fs.get(0).await().getResult());
      s.hangUp();
    }
  }

  @Test
  void closedConnectionFailsPendingCalls() throws Exception {
    try (FakeServer s = new FakeServer(); CalcTcpClient c = CalcTcpClient.on(s.connect())) {
      TcpCallFuture<CalculateResponse> f = c.calculate(ADD_2_3);
      s.next();
      s.hangUp();
      TcpCallException e = assertThrows(TcpCallException.class, f::await);
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
      assertFalse(e.isSafeToRetry());
    }
  }

  @Test
  void refusedConnectionReportsTheGoAwayStatus() throws Exception {
    try (FakeServer s = new FakeServer()) {
      byte[] ga = Wire.frame(FrameKind.GOAWAY, 0, 0,
          Wire.goAwayPayload(0, com.google.rpc.Status.newBuilder().setCode(9).setMessage("calc speaks protocol version 1").build()));
      Exception e = assertThrows(Exception.class, () -> s.connect(ga));
      Throwable cause = e instanceof java.util.concurrent.ExecutionException ? e.getCause() : e;
      assertTrue(cause instanceof TcpCallException, String.valueOf(cause));
      assertEquals(Status.Code.FAILED_PRECONDITION, Status.fromThrowable(cause).getCode());
    }
  }

  @Test
  void pingPong() throws Exception {
    try (FakeServer s = new FakeServer(); TcpChannel ch = s.connect()) {
      s.send(FrameKind.PING, 0, 0, new byte[] {0, 0, 0, 0, 0, 0, 0, 42});
      s.expectRaw("0000000e 09 00 00000000 000000000000002a");
      CompletableFuture<Duration> rtt = ch.ping();
      Frame ping = s.next();
      assertEquals(FrameKind.PING, ping.kind());
      s.send(FrameKind.PONG, 0, 0, ping.payload());
      assertNotNull(rtt.get(5, TimeUnit.SECONDS));
    }
  }

  @Test
  void streamSendsMessagesHalfClosesAndCancels() throws Exception {
    try (FakeServer s = new FakeServer(); CalcTcpClient c = CalcTcpClient.on(s.connect())) {
      List<CalculateStreamResponse> got = new ArrayList<>();
      CompletableFuture<Throwable> end = new CompletableFuture<>();
      StreamObserver<CalculateStreamResponse> obs = new StreamObserver<>() {
        @Override public void onNext(CalculateStreamResponse r) { got.add(r); }
        @Override public void onError(Throwable t) { end.complete(t); }
        @Override public void onCompleted() { end.complete(null); }
      };
      TcpClientStream<CalculateStreamRequest, CalculateStreamResponse> st = c.calculateStream(obs);
      CalculateStreamRequest req = CalculateStreamRequest.newBuilder().setId(7)
          .setCalculation(CalculateRequest.newBuilder().setOperator(Operator.OPERATOR_MULTIPLY).setLhs(6).setRhs(7)).build();
      st.send(req);
      st.halfClose();
      // testdata/wire/vectors.json "stream_client", with call id 1 instead of 5 and method ref 1 instead of 3
      s.expectRaw("0000003802020000000101302f63616c63756c61746f722e76312e43616c63756c61746f72536572766963652f43616c63756c61746553747265616d");
      s.expectRaw("00000010 03 00 00000001 08071206080310061807");
      s.expectRaw("00000006040000000001");
      s.send(FrameKind.MESSAGE, 0, 1, CalculateStreamResponse.newBuilder().setId(7).setResult(42).build().toByteArray());
      s.send(FrameKind.STATUS, 0, 1, new byte[0]);
      assertEquals(null, end.get(5, TimeUnit.SECONDS));
      assertEquals(42, got.get(0).getResult());

      CompletableFuture<Throwable> end2 = new CompletableFuture<>();
      TcpClientStream<CalculateStreamRequest, CalculateStreamResponse> st2 = c.calculateStream(new StreamObserver<>() {
        @Override public void onNext(CalculateStreamResponse r) {}
        @Override public void onError(Throwable t) { end2.complete(t); }
        @Override public void onCompleted() { end2.complete(null); }
      });
      assertEquals(2, s.next().id());
      st2.cancel();
      s.expectRaw("00000006070000000002");
      assertFalse(end2.isDone()); // the server's final STATUS ends it
      s.send(FrameKind.STATUS, 0, 2, com.google.rpc.Status.newBuilder().setCode(1).setMessage("context canceled").build().toByteArray());
      assertEquals(Status.Code.CANCELLED, Status.fromThrowable(end2.get(5, TimeUnit.SECONDS)).getCode());
    }
  }

  @Test
  void cancelledFutureSendsCancel() throws Exception {
    try (FakeServer s = new FakeServer(); CalcTcpClient c = CalcTcpClient.on(s.connect())) {
      TcpCallFuture<CalculateResponse> f = c.calculate(ADD_2_3);
      long id = s.next().id();
      assertTrue(f.cancel(false));
      Frame cancel = s.next();
      assertEquals(FrameKind.CANCEL, cancel.kind());
      assertEquals(id, cancel.id());
      assertEquals(Status.Code.CANCELLED, assertThrows(StatusRuntimeException.class, f::await).getStatus().getCode());
    }
  }

  @Test
  void tooLargeRequestFailsLocally() throws Exception {
    try (FakeServer s = new FakeServer(); CalcTcpClient c = CalcTcpClient.on(s.connect())) {
      String huge = "1".repeat(Wire.DEFAULT_MAX_MESSAGE_SIZE + 1);
      StatusRuntimeException e = assertThrows(StatusRuntimeException.class,
          () -> c.evaluate(EvaluateRequest.newBuilder().setExpression(huge).build()).await());
      assertEquals(Status.Code.RESOURCE_EXHAUSTED, e.getStatus().getCode());
      c.calculate(ADD_2_3);
      assertArrayEquals(new byte[] {0, 0, 0, 1}, java.util.Arrays.copyOfRange(s.nextRaw(), 6, 10)); // id 1: nothing was sent before
    }
  }

  static String hex(String s) {
    return java.util.HexFormat.of().formatHex(s.getBytes(java.nio.charset.StandardCharsets.UTF_8));
  }
}
