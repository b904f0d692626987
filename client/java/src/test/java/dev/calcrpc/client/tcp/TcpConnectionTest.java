package dev.calcrpc.client.tcp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.calcrpc.calculator.v1.CalculateResponse;
import dev.calcrpc.client.wire.Frame;
import dev.calcrpc.client.wire.FrameKind;
import dev.calcrpc.client.wire.Wire;
import io.grpc.Status;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** One raw TCP connection against a fake server: the frames' view of calls, GOAWAY, the end, PING. */
@Timeout(30)
class TcpConnectionTest {
  static final String CALCULATE = "/calculator.v1.CalculatorService/Calculate";
  static final byte[] ADD_2_3 = TcpChannelTest.ADD_2_3.toByteArray();

  /** A listener that records a call's messages and end. */
  static final class Recorder implements TcpConnection.Listener {
    final List<byte[]> messages = new ArrayList<>();
    final CompletableFuture<TcpCallException> end = new CompletableFuture<>();

    @Override
    public synchronized void onMessage(byte[] message) {
      messages.add(message);
    }

    @Override
    public void onClose(TcpCallException error) {
      if (!end.complete(error)) {
        throw new AssertionError("onClose twice");
      }
    }

    TcpCallException await() throws Exception {
      return end.get(5, TimeUnit.SECONDS);
    }
  }

  @Test
  void unaryResponseThenClose() throws Exception {
    try (FakeServer s = new FakeServer(); TcpConnection c = s.connect()) {
      Recorder r = new Recorder();
      TcpConnection.Call call = c.start(CALCULATE, ADD_2_3, null, null, true, r);
      assertEquals(1, s.next().id());
      s.send(FrameKind.RESPONSE, 0, call.id(), CalculateResponse.newBuilder().setResult(5).build().toByteArray());
      assertNull(r.await());
      assertEquals(5, CalculateResponse.parseFrom(r.messages.get(0)).getResult());
      assertEquals(0, c.activeCalls());
    }
  }

  @Test
  void goAwayFailsCallsAboveLastIdAsSafeToRetry() throws Exception {
    try (FakeServer s = new FakeServer(); TcpConnection c = s.connect()) {
      List<Recorder> rs = new ArrayList<>();
      for (int i = 0; i < 3; i++) {
        Recorder r = new Recorder();
        rs.add(r);
        c.start(CALCULATE, ADD_2_3, null, null, true, r);
        s.next();
      }
      s.send(FrameKind.GOAWAY, 0, 0, Wire.goAwayPayload(1, com.google.rpc.Status.newBuilder().setMessage("server shutting down").build()));
      for (int i = 1; i < 3; i++) {
        TcpCallException e = rs.get(i).await();
        assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
        assertTrue(e.isSafeToRetry());
        assertTrue(e.isLocal());
      }
      assertFalse(rs.get(0).end.isDone());
      assertTrue(c.isGoingAway());
      assertFalse(c.isUsable());
      assertTrue(c.endFuture().isDone());
      TcpCallException late = assertThrows(TcpCallException.class, () -> c.start(CALCULATE, ADD_2_3, null, null, true, new Recorder()));
      assertEquals(Status.Code.UNAVAILABLE, late.getStatus().getCode());
      assertTrue(late.isSafeToRetry());
      s.send(FrameKind.RESPONSE, 0, 1, CalculateResponse.newBuilder().setResult(5).build().toByteArray());
      assertNull(rs.get(0).await());
      s.hangUp();
      assertNotNull(c.terminationFuture().get(5, TimeUnit.SECONDS));
    }
  }

  @Test
  void closedConnectionFailsPendingCallsNotSafeToRetry() throws Exception {
    try (FakeServer s = new FakeServer(); TcpConnection c = s.connect()) {
      Recorder r = new Recorder();
      c.start(CALCULATE, ADD_2_3, null, null, true, r);
      s.next();
      s.hangUp();
      TcpCallException e = r.await();
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
      assertFalse(e.isSafeToRetry()); // it was sent: the server may have processed it
      TcpCallException after = assertThrows(TcpCallException.class, () -> c.start(CALCULATE, ADD_2_3, null, null, true, new Recorder()));
      assertTrue(after.isSafeToRetry()); // nothing of it was sent
    }
  }

  @Test
  void exhaustedIdsEndTheConnectionForNewCalls() throws Exception {
    try (FakeServer s = new FakeServer(); TcpConnection c = s.connect()) {
      c.setNextId(0xFFFF_FFFFL);
      c.start(CALCULATE, ADD_2_3, null, null, true, new Recorder());
      assertEquals(0xFFFF_FFFFL, s.next().id());
      TcpCallException e = assertThrows(TcpCallException.class, () -> c.start(CALCULATE, ADD_2_3, null, null, true, new Recorder()));
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
      assertTrue(e.isSafeToRetry());
      assertFalse(c.isUsable()); // a channel stops picking it and connects anew
      assertTrue(c.endFuture().isDone());
      assertFalse(c.isTerminated()); // the call in flight still gets its answer
    }
  }

  @Test
  void streamingFramesAndServerStatus() throws Exception {
    try (FakeServer s = new FakeServer(); TcpConnection c = s.connect()) {
      Recorder r = new Recorder();
      TcpConnection.Call call = c.start("calculator.v1.CalculatorService/CalculateStream", null, null, null, true, r);
      Frame req = s.next();
      assertEquals(FrameKind.REQUEST, req.kind());
      call.sendMessage(new byte[] {8, 1}, true);
      assertEquals(FrameKind.MESSAGE, s.next().kind());
      call.halfClose();
      assertEquals(FrameKind.HALF_CLOSE, s.next().kind());
      s.send(FrameKind.MESSAGE, 0, call.id(), new byte[] {8, 1});
      s.send(FrameKind.RESPONSE, 0, call.id(), new byte[0]); // not on a stream
      TcpCallException e = r.await();
      assertEquals(Status.Code.INTERNAL, e.getStatus().getCode());
      assertEquals(1, r.messages.size());
      assertEquals(FrameKind.CANCEL, s.next().kind());
    }
  }

  @Test
  void refusedConnectionReportsTheGoAwayStatus() throws Exception {
    try (FakeServer s = new FakeServer()) {
      byte[] ga = Wire.frame(FrameKind.GOAWAY, 0, 0,
          Wire.goAwayPayload(0, com.google.rpc.Status.newBuilder().setCode(9).setMessage("calc speaks protocol version 1").build()));
      Exception e = assertThrows(Exception.class, () -> s.connect(ga));
      Throwable cause = e instanceof ExecutionException ? e.getCause() : e;
      assertTrue(cause instanceof TcpCallException, String.valueOf(cause));
      assertEquals(Status.Code.FAILED_PRECONDITION, Status.fromThrowable(cause).getCode());
      assertFalse(((TcpCallException) cause).isLocal());
    }
  }

  @Test
  void silentServerFailsKeepalive() throws Exception {
    try (FakeServer s = new FakeServer()) {
      // the server asks for pings every 50 ms (half its idle timeout) and then says nothing
      dev.calcrpc.client.wire.Settings quick = new dev.calcrpc.client.wire.Settings(Wire.DEFAULT_MAX_FRAME_SIZE,
          Wire.DEFAULT_MAX_MESSAGE_SIZE, Wire.DEFAULT_COMPRESS_THRESHOLD, 1024, 100);
      CompletableFuture<TcpConnection> cf = CompletableFuture.supplyAsync(() -> TcpConnection.over(s.toClient.in, s.toServer.out,
          s::close, FakeServer.options().keepAlive(true).keepAliveTimeout(Duration.ofMillis(200)), "fake"));
      s.accept.run();
      s.send(Wire.frame(FrameKind.SETTINGS, 0, 0, quick.encode()));
      TcpConnection c = cf.get(5, TimeUnit.SECONDS);
      Recorder r = new Recorder();
      c.start(CALCULATE, ADD_2_3, null, null, true, r);
      TcpCallException e = r.await();
      assertEquals(Status.Code.UNAVAILABLE, e.getStatus().getCode());
      assertTrue(e.getStatus().getDescription().startsWith("keepalive: nothing from the server within 200 ms of a PING"),
          e.getStatus().getDescription());
      assertTrue(c.isTerminated());
    }
  }

  @Test
  void pingPong() throws Exception {
    try (FakeServer s = new FakeServer(); TcpConnection c = s.connect()) {
      s.send(FrameKind.PING, 0, 0, new byte[] {0, 0, 0, 0, 0, 0, 0, 42});
      s.expectRaw("0000000e 09 00 00000000 000000000000002a");
      CompletableFuture<Duration> rtt = c.ping();
      Frame ping = s.next();
      assertEquals(FrameKind.PING, ping.kind());
      s.send(FrameKind.PONG, 0, 0, ping.payload());
      assertNotNull(rtt.get(5, TimeUnit.SECONDS));
    }
  }
}
