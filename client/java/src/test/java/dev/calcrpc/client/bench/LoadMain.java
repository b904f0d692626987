package dev.calcrpc.client.bench;

import dev.calcrpc.calculator.v1.CalculateRequest;
import dev.calcrpc.calculator.v1.CalculateResponse;
import dev.calcrpc.calculator.v1.CalculatorServiceGrpc;
import dev.calcrpc.calculator.v1.Operator;
import dev.calcrpc.client.grpc.CalcGrpc;
import dev.calcrpc.client.tcp.TcpChannel;
import dev.calcrpc.client.security.TlsOptions;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.util.Arrays;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;

/**
 * The Java load client of scripts/bench-langs.sh (client/java/run-bench.sh runs it): unary
 * {@code Calculate(ADD, i, 1)} calls (i cycling through 0–99, as calc-bench's) over one raw TCP
 * {@link TcpChannel} or one grpc-java channel (one HTTP/2 connection), with N calls outstanding at
 * all times through the async stub, each answer checked. It warms up, measures, and prints one
 * line of JSON on stdout:
 *
 * <pre>{"lang":"java","transport":"tcp","concurrency":64,"calls":123456,"errors":0,"seconds":5.000,
 * "calls_per_sec":24691.2,"p50_us":2510.0,"p99_us":6100.0}</pre>
 *
 * <p>It is a test-scope program, not part of the published library. Arguments: {@code --transport
 * tcp|grpc --addr HOST:PORT --concurrency N --duration SECONDS [--warmup SECONDS] [--executor
 * default|direct]}: {@code direct} runs callbacks on the channel's reading thread instead of its
 * default executor (a thread pool), as a Java user who tunes for speed would; scripts/bench-langs.sh
 * measures the defaults. Exit status 0 when calls were made and none failed, 1 otherwise (the JSON
 * line is printed either way), 2 for a usage error.
 */
public final class LoadMain {
  /** How long outstanding calls are waited for after the measured window. */
  private static final long GRACE_NANOS = TimeUnit.SECONDS.toNanos(5);
  /** Latency samples kept in all (each caller keeps its share, as a reservoir past it). */
  private static final int MAX_SAMPLES = 4_000_000;

  private LoadMain() {}

  public static void main(String[] args) throws Exception {
    String transport = null;
    String addr = null;
    int concurrency = 0;
    double duration = 0;
    double warmup = 1;
    boolean direct = false;
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      String v = null;
      int eq = a.indexOf('=');
      if (a.startsWith("--") && eq > 0) {
        v = a.substring(eq + 1);
        a = a.substring(0, eq);
      } else if (i + 1 < args.length) {
        v = args[++i];
      }
      if (v == null) {
        usage("missing value for " + a);
      }
      try {
        switch (a) {
          case "--transport" -> transport = v;
          case "--addr" -> addr = v;
          case "--concurrency" -> concurrency = Integer.parseInt(v);
          case "--duration" -> duration = Double.parseDouble(v);
          case "--warmup" -> warmup = Double.parseDouble(v);
          case "--executor" -> {
            if (!v.equals("default") && !v.equals("direct")) {
              usage("--executor must be default or direct");
            }
            direct = v.equals("direct");
          }
          default -> usage("unknown argument " + a);
        }
      } catch (NumberFormatException e) {
        usage("bad number for " + a + ": " + v);
      }
    }
    if (!"tcp".equals(transport) && !"grpc".equals(transport)) {
      usage("--transport must be tcp or grpc");
    }
    if (addr == null || concurrency < 1 || !(duration > 0) || !(warmup >= 0)) {
      usage("--addr, --concurrency >= 1 and --duration > 0 are required; --warmup >= 0");
    }
    System.exit(run(transport, addr, concurrency, duration, warmup, direct));
  }

  private static void usage(String why) {
    System.err.println("LoadMain: " + why);
    System.err.println(
        "usage: LoadMain --transport tcp|grpc --addr HOST:PORT --concurrency N --duration SECONDS [--warmup SECONDS]"
            + " [--executor default|direct]");
    System.exit(2);
  }

  /**
   * Runs the load and prints its JSON line; returns the exit status. With direct, callbacks run
   * on the thread that read the response (TcpChannel's executor(Runnable::run), grpc-java's
   * directExecutor()) instead of each channel's default executor, a thread pool.
   */
  static int run(String transport, String addr, int concurrency, double duration, double warmup, boolean direct)
      throws InterruptedException {
    // One channel: TcpChannel keeps one connection to a single address; grpc-java's default
    // pick_first policy one HTTP/2 connection.
    ManagedChannel channel;
    if (transport.equals("tcp")) {
      TcpChannel.Builder b = TcpChannel.forTarget(addr);
      if (direct) {
        b.executor(Runnable::run);
      }
      channel = b.build();
    } else {
      ManagedChannelBuilder<?> b = CalcGrpc.builder(addr, TlsOptions.NONE, null);
      if (direct) {
        b.directExecutor();
      }
      channel = b.build();
    }
    CalculatorServiceGrpc.CalculatorServiceStub stub = CalculatorServiceGrpc.newStub(channel);

    // As calc-bench does, the connection is opened and used once before the warm-up starts: a
    // JVM's first call loads and links much of Netty or the raw TCP client, which the warm-up
    // window alone may not cover when it is short.
    CalculateRequest first =
        CalculateRequest.newBuilder().setOperator(Operator.OPERATOR_ADD).setLhs(1).setRhs(1).build();
    String firstError = null;
    try {
      long r = CalculatorServiceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS)
          .calculate(first).getResult();
      if (r != 2) {
        firstError = "wrong answer to 1 + 1: " + r;
      }
    } catch (RuntimeException e) {
      Status s = Status.fromThrowable(e);
      firstError = "first call: " + s.getCode() + ": " + s.getDescription();
    }
    if (firstError != null) {
      System.out.println(String.format(Locale.ROOT,
          "{\"lang\":\"java\",\"transport\":\"%s\",\"concurrency\":%d,\"calls\":0,\"errors\":1,"
              + "\"seconds\":0,\"calls_per_sec\":0,\"p50_us\":0,\"p99_us\":0,\"first_error\":\"%s\"}",
          transport, concurrency, jsonEscape(firstError)));
      channel.shutdownNow();
      return 1;
    }

    long start = System.nanoTime();
    long measureStart = start + (long) (warmup * 1e9);
    long measureEnd = measureStart + (long) (duration * 1e9);
    CountDownLatch done = new CountDownLatch(concurrency);
    Caller[] callers = new Caller[concurrency];
    int samplesEach = Math.max(1024, MAX_SAMPLES / concurrency);
    for (int i = 0; i < concurrency; i++) {
      callers[i] = new Caller(stub, measureStart, measureEnd, samplesEach, done);
    }
    for (Caller c : callers) {
      c.issue();
    }
    long waitNanos = measureEnd + GRACE_NANOS - System.nanoTime();
    boolean all = done.await(Math.max(0, waitNanos), TimeUnit.NANOSECONDS);

    long calls = 0;
    long errors = 0;
    int n = 0;
    for (Caller c : callers) {
      calls += c.calls;
      errors += c.errors;
      if (firstError == null) {
        firstError = c.firstError;
      }
      n += Math.min(c.kept, c.samples.length);
    }
    if (!all) {
      long stuck = done.getCount();
      errors += stuck;
      if (firstError == null) {
        firstError = stuck + " calls unanswered 5 s after the measured window";
      }
    }
    long[] lat = new long[n];
    int k = 0;
    for (Caller c : callers) {
      int m = Math.min(c.kept, c.samples.length);
      System.arraycopy(c.samples, 0, lat, k, m);
      k += m;
    }
    Arrays.sort(lat);
    double seconds = (measureEnd - measureStart) / 1e9;
    StringBuilder json = new StringBuilder(256);
    json.append("{\"lang\":\"java\",\"transport\":\"").append(transport).append('"')
        .append(",\"concurrency\":").append(concurrency)
        .append(",\"calls\":").append(calls)
        .append(",\"errors\":").append(errors)
        .append(String.format(Locale.ROOT, ",\"seconds\":%.3f", seconds))
        .append(String.format(Locale.ROOT, ",\"calls_per_sec\":%.1f", calls / seconds))
        .append(String.format(Locale.ROOT, ",\"p50_us\":%.1f", percentile(lat, 50) / 1e3))
        .append(String.format(Locale.ROOT, ",\"p99_us\":%.1f", percentile(lat, 99) / 1e3));
    if (direct) {
      json.append(",\"executor\":\"direct\"");
    }
    if (firstError != null) {
      json.append(",\"first_error\":\"").append(jsonEscape(firstError)).append('"');
    }
    json.append('}');
    System.out.println(json);
    System.out.flush();
    channel.shutdownNow();
    channel.awaitTermination(2, TimeUnit.SECONDS);
    return errors == 0 && calls > 0 ? 0 : 1;
  }

  /** Returns the p-th percentile of sorted (nearest rank), 0 if it is empty. */
  static double percentile(long[] sorted, double p) {
    if (sorted.length == 0) {
      return 0;
    }
    int i = (int) Math.ceil(p / 100 * sorted.length) - 1;
    return sorted[Math.max(0, Math.min(sorted.length - 1, i))];
  }

  private static String jsonEscape(String s) {
    StringBuilder b = new StringBuilder(s.length());
    for (char ch : s.toCharArray()) {
      switch (ch) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        default -> {
          if (ch < 0x20) {
            b.append(String.format(Locale.ROOT, "\\u%04x", (int) ch));
          } else {
            b.append(ch);
          }
        }
      }
    }
    return b.toString();
  }

  /**
   * One caller: one call outstanding at a time, the next issued from the previous one's callback.
   * Its fields are touched by one callback at a time (each call starts after the previous one
   * ended), and read by main after the latch.
   */
  private static final class Caller implements StreamObserver<CalculateResponse> {
    private final CalculatorServiceGrpc.CalculatorServiceStub stub;
    private final long measureStart;
    private final long measureEnd;
    private final CountDownLatch done;
    long[] samples; // grows up to maxSamples
    private final int maxSamples;
    int kept; // samples offered (a reservoir past samples.length)
    long calls;
    long errors;
    String firstError;
    private long seq;
    private long lhs;
    private long sentAt;
    private CalculateResponse response;

    Caller(CalculatorServiceGrpc.CalculatorServiceStub stub, long measureStart, long measureEnd,
        int maxSamples, CountDownLatch done) {
      this.stub = stub;
      this.measureStart = measureStart;
      this.measureEnd = measureEnd;
      this.samples = new long[Math.min(maxSamples, 1 << 12)];
      this.maxSamples = maxSamples;
      this.done = done;
    }

    void issue() {
      lhs = seq++ % 100; // as calc-bench: 0–99, so every request has the same size
      response = null;
      CalculateRequest req =
          CalculateRequest.newBuilder().setOperator(Operator.OPERATOR_ADD).setLhs(lhs).setRhs(1).build();
      sentAt = System.nanoTime();
      stub.calculate(req, this);
    }

    @Override
    public void onNext(CalculateResponse r) {
      response = r;
    }

    @Override
    public void onError(Throwable t) {
      errors++;
      if (firstError == null) {
        Status s = Status.fromThrowable(t);
        firstError = s.getCode() + ": " + s.getDescription();
      }
      next(System.nanoTime(), false);
    }

    @Override
    public void onCompleted() {
      long now = System.nanoTime();
      if (response == null || response.getResult() != lhs + 1) {
        errors++;
        if (firstError == null) {
          firstError = "wrong answer to " + lhs + " + 1: " + (response == null ? "no response" : response.getResult());
        }
        next(now, false);
        return;
      }
      next(now, true);
    }

    private void next(long now, boolean ok) {
      if (ok && now >= measureStart && now <= measureEnd) {
        calls++;
        record(now - sentAt);
      }
      if (now >= measureEnd) {
        done.countDown();
        return;
      }
      issue();
    }

    /** Keeps a latency sample: all of them up to maxSamples, then a uniform reservoir. */
    private void record(long nanos) {
      if (kept == samples.length && samples.length < maxSamples) {
        samples = Arrays.copyOf(samples, Math.min(maxSamples, samples.length * 2));
      }
      if (kept < samples.length) {
        samples[kept++] = nanos;
        return;
      }
      kept++;
      int j = ThreadLocalRandom.current().nextInt(kept);
      if (j < samples.length) {
        samples[j] = nanos;
      }
    }
  }
}
