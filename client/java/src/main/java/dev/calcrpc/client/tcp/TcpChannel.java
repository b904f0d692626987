package dev.calcrpc.client.tcp;

import dev.calcrpc.client.security.BearerToken;
import dev.calcrpc.client.security.Hosts;
import dev.calcrpc.client.security.TlsOptions;
import io.grpc.CallCredentials;
import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import javax.net.ssl.SSLContext;

/**
 * calc's raw TCP transport as an {@link io.grpc.Channel}: the stubs grpc-java generates
 * ({@code CalculatorServiceGrpc.newBlockingStub(channel)}, {@code newStub}, {@code newFutureStub})
 * work over it unchanged, streaming included, with deadlines, metadata, call credentials,
 * cancellation and the same status codes and details as over gRPC.
 *
 * <pre>{@code
 * TcpChannel channel = TcpChannel.forTarget("127.0.0.1:4000").build();
 * CalculatorServiceGrpc.CalculatorServiceBlockingStub calc = CalculatorServiceGrpc.newBlockingStub(channel);
 * long five = calc.withDeadlineAfter(5, TimeUnit.SECONDS).calculate(request).getResult();
 * channel.shutdown();
 * }</pre>
 *
 * <p>The target is {@code HOST:PORT} or a comma-separated list of them. The channel keeps one
 * {@link TcpConnection} to every endpoint and reconnects each by itself: at once after losing a
 * READY connection, then with gRPC's connection backoff ({@link Backoff#CONNECTION}: 1 s, ×1.6 per
 * failure up to 120 s, ±20% jitter, each attempt given at least the min connect timeout, 20 s),
 * reset by a successful handshake. Calls go round robin over the READY connections. With none
 * READY a call waits while an endpoint is CONNECTING and fails fast with UNAVAILABLE once all are
 * in TRANSIENT_FAILURE, as gRPC's calls do; with {@code withWaitForReady()} (or the builder's
 * waitForReady) it waits until its deadline.
 *
 * <p>A call the server never processed (above its GOAWAY's last accepted id, or refused because
 * its connection was going away or closed before the REQUEST was sent) is made again on another
 * connection under the same deadline, at most {@code maxAttempts} (5) attempts in all. With
 * {@code retryIdempotent} so is a unary call that failed with UNAVAILABLE although the server may
 * have processed it (its connection was lost), after a {@link Backoff#RETRY} delay: set it only
 * when every method called is idempotent, as calc's are. Streams are not retried once opened.
 *
 * <p>Over TLS ({@link Builder#tls}, {@link Builder#tlsCa} ...) every connection runs TLS 1.3 with
 * ALPN calc/1 and verifies the server's certificate; {@link Builder#token} sends
 * {@code authorization: Bearer <token>} with every call, and is refused in plaintext to a host
 * that is not loopback.
 */
public final class TcpChannel extends ManagedChannel {
  /** Attempts of one call, retries included, unless {@link Builder#maxAttempts} says otherwise. */
  public static final int DEFAULT_MAX_ATTEMPTS = 5;

  /** The least time one connection attempt is given, handshakes included: gRPC's MIN_CONNECT_TIMEOUT. */
  public static final Duration DEFAULT_MIN_CONNECT_TIMEOUT = Duration.ofSeconds(20);

  /** Opens a connection to one endpoint; a test replaces it. */
  interface Connector {
    TcpConnection connect(String host, int port, Duration timeout);
  }

  /** Learns the outcome of a pick. */
  interface PickListener {
    void picked(TcpConnection conn);

    void failed(TcpCallException why);
  }

  /** Builds a {@link TcpChannel}; the defaults are those of the Go client's ClientOptions. */
  public static final class Builder {
    private final String target;
    private TlsOptions tls = TlsOptions.NONE;
    private String token;
    private Backoff backoff = Backoff.CONNECTION;
    private Backoff retryBackoff = Backoff.RETRY;
    private Duration minConnectTimeout = DEFAULT_MIN_CONNECT_TIMEOUT;
    private int maxAttempts = DEFAULT_MAX_ATTEMPTS;
    private boolean retryIdempotent;
    private boolean waitForReady;
    private boolean keepAlive = true;
    private Duration keepAliveTimeout = TcpConnection.DEFAULT_KEEPALIVE_TIMEOUT;
    private int maxInboundMessageSize = dev.calcrpc.client.wire.Wire.DEFAULT_MAX_MESSAGE_SIZE;
    private Executor executor;
    private Connector connector;

    private Builder(String target) {
      this.target = target;
    }

    /** All the TLS options at once. */
    public Builder tls(TlsOptions options) {
      this.tls = options == null ? TlsOptions.NONE : options;
      return this;
    }

    /** TLS on, trusting the JDK's default roots unless {@link #tlsCa} is set (--tls). */
    public Builder tls(boolean on) {
      tls = tls.withTls(on);
      return this;
    }

    /** A PEM file of the CA certificates to trust instead of the JDK's (--tls-ca); turns TLS on. */
    public Builder tlsCa(Path file) {
      tls = tls.withCa(file);
      return this;
    }

    /** The client certificate (PEM), for a server that requires mutual TLS (--tls-cert); with {@link #tlsKey}. */
    public Builder tlsCert(Path file) {
      tls = tls.withCert(file, tls.key());
      return this;
    }

    /** The client certificate's private key (PEM, PKCS#8) (--tls-key). */
    public Builder tlsKey(Path file) {
      tls = tls.withCert(tls.cert(), file);
      return this;
    }

    /** The name to verify the servers' certificates against instead of each endpoint's host (--tls-server-name). */
    public Builder tlsServerName(String name) {
      tls = tls.withServerName(name);
      return this;
    }

    /**
     * A bearer token sent as {@code authorization: Bearer <token>} with every call (null or empty
     * for none). {@link #build} refuses it without TLS to a host that is not loopback.
     */
    public Builder token(String token) {
      this.token = token == null || token.isEmpty() ? null : token;
      return this;
    }

    /** The spacing of connection attempts to one endpoint (default {@link Backoff#CONNECTION}). */
    public Builder backoff(Backoff b) {
      this.backoff = b;
      return this;
    }

    /** The least time a connection attempt is given, handshakes included (default 20 s). */
    public Builder minConnectTimeout(Duration d) {
      if (d.isNegative() || d.isZero()) {
        throw new IllegalArgumentException("minConnectTimeout must be positive");
      }
      this.minConnectTimeout = d;
      return this;
    }

    /** The most attempts of one call, retries included (default 5). */
    public Builder maxAttempts(int n) {
      if (n < 1) {
        throw new IllegalArgumentException("maxAttempts must be at least 1");
      }
      this.maxAttempts = n;
      return this;
    }

    /**
     * Also retry a unary call that failed with UNAVAILABLE though the server may have processed
     * it (default false): only for idempotent methods, as every calculator method is.
     */
    public Builder retryIdempotent(boolean on) {
      this.retryIdempotent = on;
      return this;
    }

    /** The spacing of those retries (default {@link Backoff#RETRY}). */
    public Builder retryBackoff(Backoff b) {
      this.retryBackoff = b;
      return this;
    }

    /**
     * Make every call that finds no READY connection wait for one until its deadline, as
     * {@code withWaitForReady()} does for one call (default false: fail fast once every endpoint
     * is in TRANSIENT_FAILURE).
     */
    public Builder waitForReady(boolean on) {
      this.waitForReady = on;
      return this;
    }

    /** PING every half of the server's idle timeout (default on). */
    public Builder keepAlive(boolean on) {
      this.keepAlive = on;
      return this;
    }

    /**
     * How long a connection waits for any frame after a keepalive PING before it is given up as
     * dead and replaced (default 20 s).
     */
    public Builder keepAliveTimeout(Duration d) {
      this.keepAliveTimeout = d;
      return this;
    }

    /** The largest message accepted from the server, after decompression (default 4 MiB). */
    public Builder maxInboundMessageSize(int n) {
      this.maxInboundMessageSize = n;
      return this;
    }

    /**
     * The executor that runs call listeners and so stub callbacks (default: the channel's own
     * threads). A call's CallOptions executor wins, as in grpc-java.
     */
    public Builder executor(Executor e) {
      this.executor = e;
      return this;
    }

    Builder connector(Connector c) {
      this.connector = c;
      return this;
    }

    /**
     * Builds the channel; it starts connecting to every endpoint at once and returns without
     * waiting.
     *
     * @throws IllegalArgumentException for a malformed target, TLS files that cannot be loaded
     *     (the message names the file), or a token that would go in plaintext to a host that is
     *     not loopback
     */
    public TcpChannel build() {
      List<Endpoint> endpoints = parseTarget(target);
      Hosts.checkToken(token, tls.isOn(), target);
      SSLContext ctx = null;
      if (tls.isOn()) {
        try {
          ctx = tls.sslContext();
        } catch (IOException e) {
          throw new IllegalArgumentException(e.getMessage(), e);
        }
      }
      return new TcpChannel(this, endpoints, ctx);
    }
  }

  /** One HOST:PORT of the target. */
  record Endpoint(String host, int port) {
    @Override
    public String toString() {
      return TcpConnection.authorityOf(host, port);
    }
  }

  /** Starts building a channel to target: HOST:PORT or a comma-separated list of them. */
  public static Builder forTarget(String target) {
    return new Builder(target);
  }

  static List<Endpoint> parseTarget(String target) {
    if (target == null || target.isBlank()) {
      throw new IllegalArgumentException("empty target: want HOST:PORT[,HOST:PORT...]");
    }
    Set<Endpoint> out = new LinkedHashSet<>();
    for (String part : target.split(",", -1)) {
      String t = part.trim();
      String host;
      String port;
      if (t.startsWith("[")) {
        int end = t.indexOf("]:");
        if (end < 0) {
          throw new IllegalArgumentException("bad endpoint \"" + t + "\" in target \"" + target + "\": want [IPV6]:PORT");
        }
        host = t.substring(1, end);
        port = t.substring(end + 2);
      } else {
        int colon = t.lastIndexOf(':');
        if (colon <= 0 || t.indexOf(':') != colon) {
          throw new IllegalArgumentException("bad endpoint \"" + t + "\" in target \"" + target + "\": want HOST:PORT[,HOST:PORT...]");
        }
        host = t.substring(0, colon);
        port = t.substring(colon + 1);
      }
      int p;
      try {
        p = Integer.parseInt(port);
      } catch (NumberFormatException e) {
        p = -1;
      }
      if (host.isEmpty() || p < 1 || p > 65535) {
        throw new IllegalArgumentException("bad endpoint \"" + t + "\" in target \"" + target + "\": want HOST:PORT with a port in 1..65535");
      }
      out.add(new Endpoint(host, p));
    }
    return List.copyOf(out);
  }

  // ---------------------------------------------------------------- configuration

  private final String target;
  private final String authority;
  final boolean secure;
  final CallCredentials token;
  final Backoff backoff;
  final Backoff retryBackoff;
  final Duration minConnectTimeout;
  final int maxAttempts;
  final boolean retryIdempotent;
  final boolean waitForReady;
  private final Connector connector;
  final Executor callbackExecutor;
  private final ExecutorService ownCallbackExecutor;
  private final ExecutorService connectPool;
  final ScheduledThreadPoolExecutor scheduler;

  // ---------------------------------------------------------------- state

  private final Object lock = new Object();
  private final List<Subchannel> subchannels = new ArrayList<>();
  private volatile TcpConnection[] ready = new TcpConnection[0];
  private final AtomicInteger next = new AtomicInteger();
  private final AtomicInteger connectionsMade = new AtomicInteger();
  private final Set<TcpConnection> connections = ConcurrentHashMap.newKeySet(); // every one not yet ended
  private final Set<TcpClientCall<?, ?>> calls = ConcurrentHashMap.newKeySet();
  private final CountDownLatch terminatedLatch = new CountDownLatch(1);
  // guarded by lock
  private ConnectivityState state = ConnectivityState.CONNECTING;
  private TcpCallException lastError;
  private final Set<Runnable> pickWaiters = new LinkedHashSet<>();
  private final List<Runnable> stateWatchers = new ArrayList<>();
  private boolean shutdown;
  private boolean terminated;

  private TcpChannel(Builder b, List<Endpoint> endpoints, SSLContext sslContext) {
    this.target = b.target;
    this.secure = sslContext != null;
    this.authority = b.tls.serverName() != null ? b.tls.serverName() : endpoints.get(0).toString();
    this.token = b.token == null ? null : new BearerToken(b.token);
    this.backoff = b.backoff;
    this.retryBackoff = b.retryBackoff;
    this.minConnectTimeout = b.minConnectTimeout;
    this.maxAttempts = b.maxAttempts;
    this.retryIdempotent = b.retryIdempotent;
    this.waitForReady = b.waitForReady;
    TcpConnection.Options connOpts = TcpConnection.Options.defaults()
        .keepAlive(b.keepAlive)
        .keepAliveTimeout(b.keepAliveTimeout)
        .maxInboundMessageSize(b.maxInboundMessageSize)
        .tls(sslContext, b.tls.serverName());
    this.connector = b.connector != null ? b.connector
        : (host, port, timeout) -> TcpConnection.connect(InetSocketAddress.createUnresolved(host, port),
            connOpts.copy().connectTimeout(timeout));
    this.scheduler = new ScheduledThreadPoolExecutor(1, daemonThreads("calc-tcp-channel-timer"));
    scheduler.setRemoveOnCancelPolicy(true);
    this.connectPool = Executors.newCachedThreadPool(daemonThreads("calc-tcp-connect"));
    if (b.executor != null) {
      this.ownCallbackExecutor = null;
      this.callbackExecutor = b.executor;
    } else {
      this.ownCallbackExecutor = Executors.newCachedThreadPool(daemonThreads("calc-tcp-callback"));
      this.callbackExecutor = ownCallbackExecutor;
    }
    synchronized (lock) {
      for (Endpoint e : endpoints) {
        subchannels.add(new Subchannel(e));
      }
    }
    for (Subchannel sc : List.copyOf(subchannels)) {
      sc.attemptNow();
    }
  }

  private static java.util.concurrent.ThreadFactory daemonThreads(String name) {
    AtomicInteger n = new AtomicInteger();
    return r -> {
      Thread t = new Thread(r, name + "-" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    };
  }

  @Override
  public <ReqT, RespT> ClientCall<ReqT, RespT> newCall(MethodDescriptor<ReqT, RespT> method, CallOptions callOptions) {
    return new TcpClientCall<>(this, method, callOptions);
  }

  /** The TLS server name if set, else the target's first HOST:PORT. */
  @Override
  public String authority() {
    return authority;
  }

  @Override
  public String toString() {
    return "TcpChannel(" + target + (secure ? ", TLS" : "") + ")";
  }

  // ---------------------------------------------------------------- picking

  /**
   * Picks a READY connection for a call, round robin. With none READY the listener waits while an
   * endpoint is CONNECTING, or with wait until the call gives up (the returned Runnable withdraws
   * it); otherwise it hears UNAVAILABLE with the last connection error. The listener may be called
   * before pick returns.
   */
  Runnable pick(boolean wait, PickListener l) {
    TcpConnection c = choose();
    if (c != null) {
      l.picked(c);
      return () -> {};
    }
    TcpCallException fail;
    Runnable[] waiter = new Runnable[1];
    synchronized (lock) {
      c = choose();
      if (c == null) {
        if (shutdown) {
          fail = TcpCallException.local(Status.Code.UNAVAILABLE, "channel shut down", null, true);
        } else if (state == ConnectivityState.TRANSIENT_FAILURE && !wait) {
          String why = lastError == null ? "" : ": " + lastError.getStatus().getDescription();
          fail = TcpCallException.local(Status.Code.UNAVAILABLE, "no server ready" + why, lastError, true);
        } else {
          waiter[0] = () -> pick(wait, l);
          pickWaiters.add(waiter[0]);
          return () -> {
            synchronized (lock) {
              pickWaiters.remove(waiter[0]);
            }
          };
        }
      } else {
        fail = null;
      }
    }
    if (c != null) {
      l.picked(c);
    } else {
      l.failed(fail);
    }
    return () -> {};
  }

  private TcpConnection choose() {
    TcpConnection[] rs = ready;
    for (int i = 0; i < rs.length; i++) {
      TcpConnection c = rs[Math.floorMod(next.getAndIncrement(), rs.length)];
      if (c.isUsable()) {
        return c;
      }
    }
    return null;
  }

  /** How many connections the channel has made so far. */
  int connectionsMade() {
    return connectionsMade.get();
  }

  /** How many endpoints have a READY connection now. */
  int readyCount() {
    return ready.length;
  }

  // ---------------------------------------------------------------- state

  /** Recomputes the READY list and the aggregate state; returns the waiters to run. lock is held. */
  private List<Runnable> updateLocked() {
    List<TcpConnection> rs = new ArrayList<>();
    boolean connecting = false;
    for (Subchannel sc : subchannels) {
      if (sc.state == ConnectivityState.READY) {
        rs.add(sc.conn);
      } else if (sc.state == ConnectivityState.CONNECTING) {
        connecting = true;
      }
    }
    ready = rs.toArray(new TcpConnection[0]);
    ConnectivityState st = shutdown ? ConnectivityState.SHUTDOWN
        : !rs.isEmpty() ? ConnectivityState.READY
        : connecting ? ConnectivityState.CONNECTING : ConnectivityState.TRANSIENT_FAILURE;
    List<Runnable> run = new ArrayList<>(pickWaiters);
    pickWaiters.clear();
    if (st != state) {
      state = st;
      run.addAll(stateWatchers);
      stateWatchers.clear();
    }
    return run;
  }

  private void runAll(List<Runnable> rs) {
    for (Runnable r : rs) {
      try {
        r.run();
      } catch (RuntimeException e) {
        java.util.logging.Logger.getLogger(TcpChannel.class.getName()).log(java.util.logging.Level.WARNING, "state watcher threw", e);
      }
    }
  }

  /**
   * The channel's state, aggregated over its endpoints as gRPC's round_robin does: READY if any
   * is, else CONNECTING if any is, else TRANSIENT_FAILURE; SHUTDOWN after shutdown. An endpoint
   * that failed to connect counts as TRANSIENT_FAILURE until it is READY again. The channel
   * connects from the start and is never IDLE, so requestConnection changes nothing.
   */
  @Override
  public ConnectivityState getState(boolean requestConnection) {
    synchronized (lock) {
      return state;
    }
  }

  /** Runs callback (on the callback executor) once the state is no longer source. */
  @Override
  public void notifyWhenStateChanged(ConnectivityState source, Runnable callback) {
    Runnable onExecutor = () -> callbackExecutor.execute(callback);
    synchronized (lock) {
      if (state == source) {
        stateWatchers.add(onExecutor);
        return;
      }
    }
    onExecutor.run();
  }

  /** Starts the next connection attempt of every endpoint in TRANSIENT_FAILURE now. */
  @Override
  public void resetConnectBackoff() {
    List<Subchannel> scs;
    synchronized (lock) {
      scs = List.copyOf(subchannels);
    }
    for (Subchannel sc : scs) {
      sc.resetBackoff();
    }
  }

  // ---------------------------------------------------------------- endpoints

  /** Keeps one endpoint connected. */
  private final class Subchannel {
    final Endpoint endpoint;
    // guarded by lock
    ConnectivityState state = ConnectivityState.CONNECTING;
    TcpConnection conn;
    int retries;
    ScheduledFuture<?> nextAttempt;
    boolean attempting;

    Subchannel(Endpoint endpoint) {
      this.endpoint = endpoint;
    }

    void attemptNow() {
      synchronized (lock) {
        if (shutdown || attempting) {
          return;
        }
        attempting = true;
        nextAttempt = null;
      }
      try {
        connectPool.execute(this::attempt);
      } catch (java.util.concurrent.RejectedExecutionException e) {
        // shut down meanwhile
      }
    }

    void resetBackoff() {
      ScheduledFuture<?> f;
      synchronized (lock) {
        f = nextAttempt;
        if (f == null || state != ConnectivityState.TRANSIENT_FAILURE) {
          return;
        }
        retries = 0;
      }
      if (f.cancel(false)) {
        attemptNow();
      }
    }

    /** One connection attempt; after a failure the next starts the backoff delay after this one started. */
    private void attempt() {
      long started = System.nanoTime();
      Duration wait;
      synchronized (lock) {
        wait = backoff.delay(retries, ThreadLocalRandom.current().nextDouble());
      }
      Duration timeout = wait.compareTo(minConnectTimeout) > 0 ? wait : minConnectTimeout;
      TcpConnection c;
      try {
        c = connector.connect(endpoint.host(), endpoint.port(), timeout);
      } catch (TcpCallException e) {
        failed(e, started + wait.toNanos());
        return;
      } catch (RuntimeException e) {
        failed(TcpCallException.local(Status.Code.UNAVAILABLE, "connect " + endpoint + ": " + e, e, true), started + wait.toNanos());
        return;
      }
      List<Runnable> run;
      boolean closeIt = false;
      synchronized (lock) {
        attempting = false;
        if (shutdown) {
          closeIt = true;
          run = List.of();
        } else {
          retries = 0;
          conn = c;
          state = ConnectivityState.READY;
          connectionsMade.incrementAndGet();
          connections.add(c);
          run = updateLocked();
        }
      }
      if (closeIt) {
        c.close();
        maybeTerminate();
        return;
      }
      c.terminationFuture().whenComplete((why, t) -> {
        connections.remove(c);
        maybeTerminate();
      });
      c.endFuture().whenComplete((why, t) -> lost(c));
      runAll(run);
    }

    private void failed(TcpCallException e, long nextAtNanos) {
      List<Runnable> run;
      synchronized (lock) {
        attempting = false;
        if (shutdown) {
          run = null;
        } else {
          state = ConnectivityState.TRANSIENT_FAILURE;
          lastError = e;
          retries++;
          run = updateLocked();
          long delay = Math.max(0, nextAtNanos - System.nanoTime());
          nextAttempt = scheduler.schedule(this::attemptNow, delay, TimeUnit.NANOSECONDS);
        }
      }
      if (run == null) {
        maybeTerminate();
        return;
      }
      runAll(run);
    }

    /** conn got GOAWAY or ended: no more picks of it, and a new connection at once. */
    private void lost(TcpConnection c) {
      List<Runnable> run;
      synchronized (lock) {
        if (conn != c) {
          return;
        }
        conn = null;
        state = ConnectivityState.CONNECTING;
        run = updateLocked();
      }
      runAll(run);
      attemptNow();
    }
  }

  // ---------------------------------------------------------------- calls and shutdown

  /** Registers a call that started; false if the channel is shut down. */
  boolean callStarted(TcpClientCall<?, ?> call) {
    synchronized (lock) {
      if (shutdown) {
        return false;
      }
      calls.add(call);
      return true;
    }
  }

  void callEnded(TcpClientCall<?, ?> call) {
    if (calls.remove(call)) {
      maybeTerminate();
    }
  }

  /**
   * Stops new calls (they fail with UNAVAILABLE) and reconnections; calls in flight go on, and the
   * connections close when the last of them ends.
   */
  @Override
  public TcpChannel shutdown() {
    List<Runnable> run;
    List<ScheduledFuture<?>> attempts = new ArrayList<>();
    synchronized (lock) {
      if (shutdown) {
        return this;
      }
      shutdown = true;
      for (Subchannel sc : subchannels) {
        if (sc.nextAttempt != null) {
          attempts.add(sc.nextAttempt);
        }
      }
      run = updateLocked();
    }
    attempts.forEach(f -> f.cancel(false));
    runAll(run); // waiting picks now fail
    maybeTerminate();
    return this;
  }

  /** As {@link #shutdown}, and fails the calls in flight with UNAVAILABLE and closes every connection now. */
  @Override
  public TcpChannel shutdownNow() {
    shutdown();
    for (TcpClientCall<?, ?> c : List.copyOf(calls)) {
      c.cancelByChannel(Status.UNAVAILABLE.withDescription("channel shutdownNow invoked"));
    }
    for (TcpConnection c : List.copyOf(connections)) {
      c.close();
    }
    maybeTerminate();
    return this;
  }

  private void maybeTerminate() {
    List<TcpConnection> close;
    synchronized (lock) {
      if (!shutdown || terminated || !calls.isEmpty()) {
        return;
      }
      close = List.copyOf(connections);
      if (!close.isEmpty()) {
        // Close them; their termination calls back here.
        for (Subchannel sc : subchannels) {
          sc.conn = null;
        }
      } else {
        for (Subchannel sc : subchannels) {
          if (sc.attempting) {
            return; // its connection, if any, is closed when the attempt returns
          }
        }
        terminated = true;
      }
    }
    if (!close.isEmpty()) {
      close.forEach(TcpConnection::close);
      return;
    }
    scheduler.shutdownNow();
    connectPool.shutdownNow();
    if (ownCallbackExecutor != null) {
      ownCallbackExecutor.shutdown(); // callbacks already queued still run
    }
    terminatedLatch.countDown();
  }

  @Override
  public boolean isShutdown() {
    synchronized (lock) {
      return shutdown;
    }
  }

  @Override
  public boolean isTerminated() {
    return terminatedLatch.getCount() == 0;
  }

  @Override
  public boolean awaitTermination(long timeout, TimeUnit unit) throws InterruptedException {
    return terminatedLatch.await(timeout, unit);
  }
}
