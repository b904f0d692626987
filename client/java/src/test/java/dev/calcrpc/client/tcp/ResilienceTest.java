package dev.calcrpc.client.tcp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.common.util.concurrent.ListenableFuture;
import dev.calcrpc.calculator.v1.CalculateRequest;
import dev.calcrpc.calculator.v1.CalculateResponse;
import dev.calcrpc.calculator.v1.CalculateStreamRequest;
import dev.calcrpc.calculator.v1.CalculateStreamResponse;
import dev.calcrpc.calculator.v1.CalculatorServiceGrpc;
import dev.calcrpc.calculator.v1.EvaluateRequest;
import dev.calcrpc.calculator.v1.Operator;
import dev.calcrpc.client.Calcd;
import dev.calcrpc.client.ErrorDetails;
import io.grpc.ConnectivityState;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The raw TCP channel against real calcd processes: generated stubs over it, reconnecting after
 * calcd is killed and started again on the same port, round robin over two servers, and GOAWAYs
 * from --max-connection-age handled without a failed call. Every wait is bounded.
 */
@Timeout(120)
class ResilienceTest {
  static final Backoff FAST = new Backoff(Duration.ofMillis(20), 1.6, 0.2, Duration.ofMillis(200));

  static CalculateRequest add(long a, long b) {
    return CalculateRequest.newBuilder().setOperator(Operator.OPERATOR_ADD).setLhs(a).setRhs(b).build();
  }

  static TcpChannel.Builder channel(String target) {
    return TcpChannel.forTarget(target).backoff(FAST).minConnectTimeout(Duration.ofSeconds(5));
  }

  static void awaitState(TcpChannel ch, ConnectivityState want) throws InterruptedException {
    for (int i = 0; i < 500 && ch.getState(false) != want; i++) {
      Thread.sleep(20);
    }
    assertEquals(want, ch.getState(false));
  }

  @Test
  void generatedStubsWorkOverRawTcp() throws Exception {
    try (Calcd calcd = Calcd.start()) {
      TcpChannel ch = channel(calcd.tcp()).build();
      try {
        // blocking stub
        CalculatorServiceGrpc.CalculatorServiceBlockingStub blocking =
            CalculatorServiceGrpc.newBlockingStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS);
        assertEquals(5, blocking.calculate(add(2, 3)).getResult());
        assertEquals("11.5", blocking.evaluate(EvaluateRequest.newBuilder().setExpression("2 * (3 + 4) - 10 / 4").build()).getResult());
        StatusRuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
            () -> blocking.calculate(CalculateRequest.newBuilder().setOperator(Operator.OPERATOR_DIVIDE).setLhs(1).build()));
        assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
        assertEquals("DIVISION_BY_ZERO", ErrorDetails.of(e).reason());
        assertEquals(List.of("rhs"), ErrorDetails.of(e).violationFields());

        // future stub, 50 in flight
        CalculatorServiceGrpc.CalculatorServiceFutureStub future =
            CalculatorServiceGrpc.newFutureStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS);
        List<ListenableFuture<CalculateResponse>> fs = new ArrayList<>();
        for (int i = 1; i <= 50; i++) {
          fs.add(future.calculate(add(i, i)));
        }
        for (int i = 1; i <= 50; i++) {
          assertEquals(2L * i, fs.get(i - 1).get(10, TimeUnit.SECONDS).getResult());
        }

        // async stub: the bidirectional stream, 100 messages pipelined
        TcpChannelTest.Collect got = new TcpChannelTest.Collect();
        io.grpc.stub.StreamObserver<CalculateStreamRequest> in =
            CalculatorServiceGrpc.newStub(ch).withDeadlineAfter(10, TimeUnit.SECONDS).calculateStream(got);
        for (int i = 1; i <= 100; i++) {
          in.onNext(CalculateStreamRequest.newBuilder().setId(i).setCalculation(
              CalculateRequest.newBuilder().setOperator(Operator.OPERATOR_MULTIPLY).setLhs(i).setRhs(7)).build());
        }
        in.onCompleted();
        assertEquals(null, got.end.get(10, TimeUnit.SECONDS));
        assertEquals(100, got.responses.size());
        for (int i = 1; i <= 100; i++) {
          CalculateStreamResponse r = got.responses.get(i - 1);
          assertEquals(i, r.getId());
          assertEquals(7L * i, r.getResult());
        }

        // an expired deadline fails before anything is sent
        StatusRuntimeException late = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
            () -> CalculatorServiceGrpc.newBlockingStub(ch).withDeadlineAfter(0, TimeUnit.MILLISECONDS).calculate(add(1, 1)));
        assertEquals(Status.Code.DEADLINE_EXCEEDED, late.getStatus().getCode());
      } finally {
        ch.shutdown();
        assertTrue(ch.awaitTermination(10, TimeUnit.SECONDS));
      }
    }
  }

  @Test
  void reconnectsAfterCalcdIsKilledAndRestarted() throws Exception {
    int port = Calcd.freePort();
    String addr = "127.0.0.1:" + port;
    Calcd first = Calcd.start("--tcp-addr", addr);
    TcpChannel ch = channel(addr).build();
    try {
      CalculatorServiceGrpc.CalculatorServiceBlockingStub calc = CalculatorServiceGrpc.newBlockingStub(ch);
      try {
        for (int i = 0; i < 10; i++) {
          assertEquals(2L * i, calc.withDeadlineAfter(10, TimeUnit.SECONDS).calculate(add(i, i)).getResult());
        }
        assertEquals(ConnectivityState.READY, ch.getState(false));
      } finally {
        first.kill(); // SIGKILL: no GOAWAY, the connection just ends
      }
      awaitState(ch, ConnectivityState.TRANSIENT_FAILURE); // nothing listens: attempts fail
      StatusRuntimeException down = org.junit.jupiter.api.Assertions.assertThrows(StatusRuntimeException.class,
          () -> calc.withDeadlineAfter(10, TimeUnit.SECONDS).calculate(add(1, 1)));
      assertEquals(Status.Code.UNAVAILABLE, down.getStatus().getCode()); // fail fast, as gRPC
      // the last attempt's error: "connect ADDR: Connection refused", or, when an attempt raced the kill in the
      // kernel's accept queue, the reset that ended it
      assertTrue(down.getStatus().getDescription().startsWith("no server ready: "), down.getStatus().getDescription());

      try (Calcd second = Calcd.start("--tcp-addr", addr)) {
        // the channel reconnects by itself; a waitForReady call rides on it, within its deadline
        assertEquals(42, calc.withWaitForReady().withDeadlineAfter(30, TimeUnit.SECONDS).calculate(add(40, 2)).getResult());
        assertEquals(ConnectivityState.READY, ch.getState(false));
        for (int i = 0; i < 10; i++) {
          assertEquals(2L * i, calc.withDeadlineAfter(10, TimeUnit.SECONDS).calculate(add(i, i)).getResult());
        }
      }
    } finally {
      ch.shutdownNow();
      assertTrue(ch.awaitTermination(10, TimeUnit.SECONDS));
    }
  }

  @Test
  void twoEndpointsBothGetCallsAndOneCanDie() throws Exception {
    try (Calcd a = Calcd.start("--log-level", "debug"); Calcd b = Calcd.start("--log-level", "debug")) {
      TcpChannel ch = channel(a.tcp() + "," + b.tcp()).retryIdempotent(true).build();
      try {
        for (int i = 0; i < 500 && ch.readyCount() < 2; i++) {
          Thread.sleep(20);
        }
        assertEquals(2, ch.readyCount());
        CalculatorServiceGrpc.CalculatorServiceBlockingStub calc = CalculatorServiceGrpc.newBlockingStub(ch);
        for (int i = 0; i < 20; i++) {
          assertEquals(2L * i, calc.withDeadlineAfter(10, TimeUnit.SECONDS).calculate(add(i, i)).getResult());
        }
        for (int i = 0; i < 100 && a.tcpCalls() + b.tcpCalls() < 20; i++) {
          Thread.sleep(20); // the access log is written as each call ends
        }
        assertEquals(List.of(10, 10), List.of(a.tcpCalls(), b.tcpCalls()), "round robin over two READY connections");

        a.kill();
        // every call still succeeds: on b, or retried there (retryIdempotent) if it was on a when a died
        for (int i = 0; i < 20; i++) {
          assertEquals(2L * i, calc.withDeadlineAfter(10, TimeUnit.SECONDS).calculate(add(i, i)).getResult());
        }
        assertEquals(ConnectivityState.READY, ch.getState(false));
      } finally {
        ch.shutdownNow();
        assertTrue(ch.awaitTermination(10, TimeUnit.SECONDS));
      }
    }
  }

  @Test
  void goAwaysFromMaxConnectionAgeFailNoCall() throws Exception {
    try (Calcd calcd = Calcd.start("--max-connection-age", "200ms")) {
      TcpChannel ch = channel(calcd.tcp()).build(); // no retryIdempotent: only unprocessed calls are retried
      try {
        CalculatorServiceGrpc.CalculatorServiceFutureStub calc = CalculatorServiceGrpc.newFutureStub(ch);
        int failed = 0;
        String first = null;
        // until the server has aged out (GOAWAY) three connections, for at most 20 s (a round
        // count alone ran out before the third GOAWAY on a quiet machine)
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        for (int round = 0; System.nanoTime() < deadline && ch.connectionsMade() < 4; round++) {
          List<ListenableFuture<CalculateResponse>> fs = new ArrayList<>();
          for (int i = 0; i < 16; i++) {
            fs.add(calc.withDeadlineAfter(10, TimeUnit.SECONDS).calculate(add(round, i)));
          }
          for (int i = 0; i < 16; i++) {
            try {
              assertEquals(round + i, fs.get(i).get(15, TimeUnit.SECONDS).getResult());
            } catch (java.util.concurrent.ExecutionException e) {
              failed++;
              first = first == null ? String.valueOf(e.getCause()) : first;
            }
          }
        }
        assertTrue(ch.connectionsMade() >= 4, "connections made: " + ch.connectionsMade());
        assertEquals(0, failed, "failed calls, first: " + first);
      } finally {
        ch.shutdownNow();
        assertTrue(ch.awaitTermination(10, TimeUnit.SECONDS));
      }
    }
  }
}
