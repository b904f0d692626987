package dev.calcrpc.client.tcp;

import dev.calcrpc.client.security.TlsOptions;
import dev.calcrpc.client.wire.ByteSink;
import dev.calcrpc.client.wire.Frame;
import dev.calcrpc.client.wire.FrameKind;
import dev.calcrpc.client.wire.FrameReader;
import dev.calcrpc.client.wire.RequestHeader;
import dev.calcrpc.client.wire.Settings;
import dev.calcrpc.client.wire.Wire;
import dev.calcrpc.client.wire.WireException;
import io.grpc.Deadline;
import io.grpc.Metadata;
import io.grpc.Status;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLException;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSocket;

/**
 * One raw TCP connection to calcd (PROTOCOL.md), plaintext or TLS: any number of concurrent calls,
 * paired with their answers by call id. A reader thread reads frames and completes calls; a writer
 * thread writes whole frames from a queue, coalescing whatever is queued into one socket write, so
 * no caller ever blocks on the socket and the reader never waits for the writer.
 *
 * <p>A connection stays broken once lost. {@link TcpChannel} keeps connections to every endpoint
 * of its target, reconnects them, retries the calls they did not process and is what stubs use;
 * this class is the layer under it, for tools that want one connection and the frames' view of a
 * call ({@link #start}).
 *
 * <p>Listeners are called on the reader thread (or the timer thread, for a call's local deadline,
 * or the caller's thread, for a call that fails while sending): do not block in them.
 */
public final class TcpConnection implements AutoCloseable {

  /** Connection options. */
  public static final class Options {
    Duration connectTimeout = Duration.ofSeconds(20);
    int maxInboundMessageSize = Wire.DEFAULT_MAX_MESSAGE_SIZE;
    int maxInboundFrameSize = Wire.DEFAULT_MAX_FRAME_SIZE;
    boolean keepAlive = true;
    Duration keepAliveTimeout = DEFAULT_KEEPALIVE_TIMEOUT;
    SSLContext sslContext;
    String serverName;

    /** The defaults: plaintext, 20 s to connect, 4 MiB messages, keepalive pings on. */
    public static Options defaults() {
      return new Options();
    }

    Options copy() {
      Options o = new Options();
      o.connectTimeout = connectTimeout;
      o.maxInboundMessageSize = maxInboundMessageSize;
      o.maxInboundFrameSize = maxInboundFrameSize;
      o.keepAlive = keepAlive;
      o.keepAliveTimeout = keepAliveTimeout;
      o.sslContext = sslContext;
      o.serverName = serverName;
      return o;
    }

    /**
     * Time allowed to connect, run the TLS handshake and receive the server's SETTINGS, all
     * together (default 20 s, gRPC's minimum connect timeout).
     */
    public Options connectTimeout(Duration d) {
      connectTimeout = d;
      return this;
    }

    /** Largest message this side accepts, after decompression (default 4 MiB). */
    public Options maxInboundMessageSize(int n) {
      maxInboundMessageSize = n;
      return this;
    }

    /** Largest frame length this side accepts (default 4,210,688). */
    public Options maxInboundFrameSize(int n) {
      maxInboundFrameSize = n;
      return this;
    }

    /** PING every half of the server's idle timeout so it does not close the connection (default on). */
    public Options keepAlive(boolean on) {
      keepAlive = on;
      return this;
    }

    /**
     * How long to wait for any frame after a keepalive PING before giving the connection up as
     * dead (default 20 s, as the Go client).
     */
    public Options keepAliveTimeout(Duration d) {
      keepAliveTimeout = d;
      return this;
    }

    /**
     * Runs the connection over TLS (PROTOCOL.md, TLS) with ctx ({@link TlsOptions#sslContext()}):
     * TLS 1.3 only, ALPN {@value TlsOptions#ALPN} offered and required after the handshake, and the
     * server's certificate verified for serverName as HTTPS does (SNI too, for a name that is not
     * an IP address). A null serverName means the host connected to. A null ctx means plaintext.
     */
    public Options tls(SSLContext ctx, String serverName) {
      this.sslContext = ctx;
      this.serverName = serverName;
      return this;
    }
  }

  /** Receives one call's answers. */
  public interface Listener {
    /** A message: a unary call's RESPONSE (then {@code onClose(null)}) or a stream's MESSAGE. */
    void onMessage(byte[] message);

    /** The end of the call: null for OK, else why. Called exactly once. */
    void onClose(TcpCallException error);
  }

  /** How long a connection waits for any frame after a keepalive PING, unless its options say otherwise. */
  public static final Duration DEFAULT_KEEPALIVE_TIMEOUT = Duration.ofSeconds(20);

  private static final byte[] CLOSE_WRITER = new byte[0];
  private static final long MAX_CALL_ID = 0xFFFF_FFFFL;

  private final Closeable transport;
  private final Options options;
  private final String authority;
  private final SSLSession sslSession;
  private final String applicationProtocol;
  private final LinkedBlockingQueue<byte[]> writeQueue = new LinkedBlockingQueue<>();
  private final Map<Long, Call> calls = new ConcurrentHashMap<>();
  private final Map<Long, CompletableFuture<Duration>> pings = new ConcurrentHashMap<>();
  private final AtomicLong pingSeq = new AtomicLong();
  private final CompletableFuture<Settings> settingsFuture = new CompletableFuture<>();
  private final CompletableFuture<TcpCallException> endFuture = new CompletableFuture<>();
  private final CompletableFuture<TcpCallException> terminationFuture = new CompletableFuture<>();
  private final ScheduledThreadPoolExecutor timer;
  private final Thread reader;
  private final Thread writer;
  private volatile Settings settings = Settings.DEFAULTS;
  private volatile long lastFrameNanos = System.nanoTime();

  // Guarded by lock: ids, refs and the connection state change together with the order in which
  // REQUEST frames are queued, so ids grow and a ref's binding precedes its bare uses.
  private final Object lock = new Object();
  private long nextId = 1;
  private final Map<String, Integer> refs = new HashMap<>();
  private Wire.GoAway goAway;
  private TcpCallException writeFailed;
  private TcpCallException terminated;
  private boolean idsExhausted;

  private TcpConnection(InputStream rawIn, OutputStream rawOut, Closeable transport, Options options, String authority,
      SSLSession sslSession, String applicationProtocol) {
    this.transport = transport;
    this.options = options;
    this.authority = authority;
    this.sslSession = sslSession;
    this.applicationProtocol = applicationProtocol;
    this.timer = new ScheduledThreadPoolExecutor(1, r -> daemon(r, "calc-tcp-timer " + authority));
    timer.setRemoveOnCancelPolicy(true);
    InputStream in = new BufferedInputStream(rawIn, 64 << 10);
    OutputStream out = new BufferedOutputStream(rawOut, 64 << 10);
    writeQueue.add(Wire.PREFACE);
    this.reader = daemon(() -> readLoop(in), "calc-tcp-reader " + authority);
    this.writer = daemon(() -> writeLoop(out), "calc-tcp-writer " + authority);
  }

  private static Thread daemon(Runnable r, String name) {
    Thread t = new Thread(r, name);
    t.setDaemon(true);
    return t;
  }

  /** Connects to host:port with default options (plaintext). */
  public static TcpConnection connect(String host, int port) {
    return connect(new InetSocketAddress(host, port), Options.defaults());
  }

  /**
   * Connects (resolving the address's host now if it is unresolved), runs the TLS handshake if
   * the options ask for TLS, sends the preface and waits for the server's SETTINGS, all within
   * the connect timeout.
   *
   * @throws TcpCallException UNAVAILABLE when the connection or the TLS handshake fails (the
   *     message says why: refused, a certificate that does not verify, a server that did not agree
   *     to ALPN calc/1, a TLS alert from a server that refused this client, a plaintext server's
   *     close), DEADLINE_EXCEEDED when the connect timeout passes first, or the GOAWAY's status
   *     when the server refuses the connection (UNAVAILABLE "this port requires TLS" to a
   *     plaintext client, FAILED_PRECONDITION for a version it does not speak, RESOURCE_EXHAUSTED
   *     past its max connections)
   */
  public static TcpConnection connect(InetSocketAddress address, Options options) {
    Options opts = options.copy();
    long deadline = System.nanoTime() + opts.connectTimeout.toNanos();
    if (address.isUnresolved()) {
      address = new InetSocketAddress(address.getHostString(), address.getPort());
    }
    String authority = authorityOf(address.getHostString(), address.getPort());
    Socket socket = new Socket();
    try {
      socket.setTcpNoDelay(true);
      socket.setKeepAlive(true);
      if (address.isUnresolved()) {
        throw new java.net.UnknownHostException(address.getHostString());
      }
      socket.connect(address, millisLeft(deadline));
    } catch (SocketTimeoutException e) {
      closeQuietly(socket);
      throw TcpCallException.local(Status.Code.DEADLINE_EXCEEDED, "connect " + authority + ": timed out", e, true);
    } catch (IOException e) {
      closeQuietly(socket);
      String why = e instanceof java.net.UnknownHostException ? "unknown host " + address.getHostString()
          : e.getMessage() != null ? e.getMessage() : e.toString();
      throw TcpCallException.local(Status.Code.UNAVAILABLE, "connect " + authority + ": " + why, e, true);
    }
    Socket s = socket;
    SSLSession session = null;
    String alpn = null;
    if (opts.sslContext != null) {
      SSLSocket tls = startTls(socket, address, opts, authority, deadline);
      s = tls;
      session = tls.getSession();
      alpn = tls.getApplicationProtocol();
    }
    TcpConnection ch;
    try {
      ch = new TcpConnection(s.getInputStream(), s.getOutputStream(), s, opts, authority, session, alpn);
    } catch (IOException e) {
      closeQuietly(s);
      throw TcpCallException.local(Status.Code.UNAVAILABLE, "connect " + authority + ": " + e, e, true);
    }
    return ch.handshake(deadline);
  }

  /**
   * Runs the client's TLS handshake on socket: TLS 1.3 only, ALPN calc/1 offered and then
   * required, SNI and HTTPS-style verification of the server's certificate for the server name.
   */
  private static SSLSocket startTls(Socket socket, InetSocketAddress address, Options opts, String authority, long deadline) {
    String name = opts.serverName != null ? opts.serverName : address.getHostString();
    SSLSocket tls;
    try {
      // The host given here is what endpoint identification checks the certificate against.
      tls = (SSLSocket) opts.sslContext.getSocketFactory().createSocket(socket, name, address.getPort(), true);
      SSLParameters p = tls.getSSLParameters();
      p.setProtocols(new String[] {"TLSv1.3"});
      p.setApplicationProtocols(new String[] {TlsOptions.ALPN});
      p.setEndpointIdentificationAlgorithm("HTTPS");
      if (!isIpLiteral(name)) {
        p.setServerNames(List.of(new SNIHostName(name)));
      }
      tls.setSSLParameters(p);
      tls.setSoTimeout(millisLeft(deadline));
      tls.startHandshake();
      tls.setSoTimeout(0);
    } catch (SocketTimeoutException e) {
      closeQuietly(socket);
      throw TcpCallException.local(Status.Code.DEADLINE_EXCEEDED, "TLS handshake with " + authority + ": timed out", e, true);
    } catch (IOException | IllegalArgumentException e) {
      closeQuietly(socket);
      throw TcpCallException.local(Status.Code.UNAVAILABLE, "TLS handshake with " + authority + ": " + tlsMessage(e), e, true);
    }
    String alpn = tls.getApplicationProtocol();
    if (!TlsOptions.ALPN.equals(alpn)) {
      closeQuietly(tls);
      throw TcpCallException.local(Status.Code.UNAVAILABLE,
          authority + " did not agree to ALPN " + TlsOptions.ALPN + " over TLS (got \"" + (alpn == null ? "" : alpn) + "\")", null, true);
    }
    return tls;
  }

  /** An SSL failure's message, with the cause's when the message alone says little. */
  private static String tlsMessage(Throwable e) {
    String m = e.getMessage() == null ? e.toString() : e.getMessage();
    Throwable c = e.getCause();
    if (c != null && c.getMessage() != null && !m.contains(c.getMessage())) {
      m += ": " + c.getMessage();
    }
    if (e instanceof java.io.EOFException || m.contains("Remote host terminated the handshake") || m.contains("Connection reset")) {
      m += " (is it a plaintext port?)";
    }
    return m;
  }

  private static boolean isIpLiteral(String host) {
    return host.contains(":") || host.matches("\\d{1,3}(\\.\\d{1,3}){3}");
  }

  static String authorityOf(String host, int port) {
    return (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
  }

  private static int millisLeft(long deadlineNanos) {
    long ms = TimeUnit.NANOSECONDS.toMillis(deadlineNanos - System.nanoTime());
    return (int) Math.max(1, Math.min(ms, Integer.MAX_VALUE));
  }

  /**
   * Speaks the protocol over an already connected byte stream pair (a tunnel, a test pipe): sends
   * the preface and waits for the server's SETTINGS. {@code transport} is closed when the
   * connection closes.
   */
  public static TcpConnection over(InputStream in, OutputStream out, Closeable transport, Options options, String authority) {
    Options opts = options.copy();
    return new TcpConnection(in, out, transport, opts, authority, null, null)
        .handshake(System.nanoTime() + opts.connectTimeout.toNanos());
  }

  private TcpConnection handshake(long deadline) {
    writer.start();
    reader.start();
    try {
      settingsFuture.get(Math.max(1, deadline - System.nanoTime()), TimeUnit.NANOSECONDS);
    } catch (ExecutionException e) {
      close();
      throw e.getCause() instanceof TcpCallException t ? t
          : TcpCallException.local(Status.Code.UNAVAILABLE, "connect " + authority + ": " + e.getCause(), e.getCause(), true);
    } catch (TimeoutException e) {
      close();
      throw TcpCallException.local(Status.Code.DEADLINE_EXCEEDED, "connect " + authority + ": no SETTINGS from the server in time", e, true);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      close();
      throw TcpCallException.local(Status.Code.CANCELLED, "interrupted while connecting", e, true);
    }
    return this;
  }

  /** The server's settings (defaults until its SETTINGS frame arrives). */
  public Settings serverSettings() {
    return settings;
  }

  /** The host:port connected to. */
  public String authority() {
    return authority;
  }

  /** The TLS session (protocol, cipher suite, peer certificates), or null for plaintext. */
  public SSLSession sslSession() {
    return sslSession;
  }

  /** The ALPN protocol agreed in the TLS handshake ("calc/1"), or null for plaintext. */
  public String applicationProtocol() {
    return applicationProtocol;
  }

  /** Whether the server sent GOAWAY: new calls fail with UNAVAILABLE. */
  public boolean isGoingAway() {
    synchronized (lock) {
      return goAway != null;
    }
  }

  /** Whether the connection is closed (by either side). */
  public boolean isTerminated() {
    synchronized (lock) {
      return terminated != null;
    }
  }

  /** Whether new calls can start: neither GOAWAY nor the end has come. */
  public boolean isUsable() {
    synchronized (lock) {
      return goAway == null && writeFailed == null && terminated == null && !idsExhausted;
    }
  }

  /**
   * Completes when the connection takes no more calls: at the server's GOAWAY (calls it accepted
   * still get their answers) or at its end, with why.
   */
  public CompletableFuture<TcpCallException> endFuture() {
    return endFuture;
  }

  /** Completes when the connection has ended (closed by either side), with why. */
  public CompletableFuture<TcpCallException> terminationFuture() {
    return terminationFuture;
  }

  /** Calls in flight. */
  public int activeCalls() {
    return calls.size();
  }

  // ---------------------------------------------------------------- calls

  /**
   * Starts a call: queues its REQUEST frame (binding the method ref the first time), and arms its
   * deadline locally as well (on expiry: DEADLINE_EXCEEDED and a CANCEL).
   *
   * @param method the full method name, "/calculator.v1.CalculatorService/Calculate" (the leading
   *     slash may be left out, as MethodDescriptor.getFullMethodName does)
   * @param unaryMessage a unary call's request message, sent in the REQUEST frame; null for a
   *     streaming call, whose messages follow with {@link Call#sendMessage}
   * @param deadline the call's deadline, or null; its remaining time is the DEADLINE budget
   * @param metadata header pairs, or null
   * @param compress whether a message at or above the server's COMPRESS_THRESHOLD is sent snappy-compressed
   * @throws TcpCallException when the call cannot start; {@link TcpCallException#isSafeToRetry()}
   *     says nothing of it was sent (the connection is closed or going away, the message is over
   *     the server's limits)
   */
  public Call start(String method, byte[] unaryMessage, Deadline deadline, List<RequestHeader.Entry> metadata,
      boolean compress, Listener listener) {
    String name = method.startsWith("/") ? method : "/" + method;
    Settings s = settings;
    Wire.EncodedMessage em;
    if (unaryMessage == null) {
      em = new Wire.EncodedMessage(new byte[0], false);
    } else if (unaryMessage.length > s.maxMessageSize()) {
      throw TcpCallException.local(Status.Code.RESOURCE_EXHAUSTED,
          "request message of " + unaryMessage.length + " bytes exceeds the server's max message size " + s.maxMessageSize(), null, true);
    } else {
      em = Wire.encodeMessage(unaryMessage, compress ? (int) Math.min(s.compressThreshold(), Integer.MAX_VALUE) : 0);
    }
    Call call = new Call(unaryMessage != null, listener);
    synchronized (lock) {
      if (terminated != null || writeFailed != null) {
        TcpCallException why = terminated != null ? terminated : writeFailed;
        throw TcpCallException.local(Status.Code.UNAVAILABLE, "connection is closed: " + why.getStatus().getDescription(), null, true);
      }
      if (goAway != null) {
        throw TcpCallException.local(Status.Code.UNAVAILABLE, "connection is going away (GOAWAY: " + describe(goAway.status()) + ")", null, true);
      }
      if (deadline != null && deadline.isExpired()) {
        throw TcpCallException.local(Status.Code.DEADLINE_EXCEEDED, "deadline exceeded before the call started", null, true);
      }
      if (nextId > MAX_CALL_ID) {
        idsExhausted = true;
      } else {
        startLocked(call, name, em, deadline, metadata == null ? List.of() : metadata, s);
      }
    }
    if (call.id == 0) { // ids exhausted; outside the lock, as the end's listeners take their own
      TcpCallException why = TcpCallException.local(Status.Code.UNAVAILABLE, "call ids exhausted on this connection", null, true);
      endFuture.complete(why); // no more calls on it: a channel replaces it
      throw why;
    }
    if (deadline != null) {
      try {
        call.deadlineTimer = timer.schedule(() -> failLocally(call,
            TcpCallException.local(Status.Code.DEADLINE_EXCEEDED, "deadline exceeded", null, false)),
            deadline.timeRemaining(TimeUnit.NANOSECONDS), TimeUnit.NANOSECONDS);
      } catch (java.util.concurrent.RejectedExecutionException e) {
        // the connection ended meanwhile: its end has failed the call already
      }
      if (call.closed.get()) {
        call.cancelTimer();
      }
    }
    return call;
  }

  /** Makes next the id of the next call (tests reach the end of the id space with it). */
  void setNextId(long next) {
    synchronized (lock) {
      nextId = next;
    }
  }

  /** Registers call under the next id and queues its REQUEST frame; lock is held. */
  private void startLocked(Call call, String name, Wire.EncodedMessage em, Deadline deadline, List<RequestHeader.Entry> md,
      Settings s) {
    Integer ref = refs.get(name);
    boolean bind = ref == null;
    if (bind && refs.size() >= Wire.MAX_METHOD_REFS) {
      throw TcpCallException.local(Status.Code.RESOURCE_EXHAUSTED, "more than " + Wire.MAX_METHOD_REFS + " methods on one connection", null, true);
    }
    if (bind) {
      ref = refs.size() + 1;
    }
    Long budget = deadline == null ? null : Math.max(0, deadline.timeRemaining(TimeUnit.MICROSECONDS));
    ByteSink p = new ByteSink(32 + em.bytes().length);
    RequestHeader h;
    try {
      h = new RequestHeader(ref, bind ? name : null, budget, md);
      h.encode(p);
    } catch (IllegalArgumentException e) {
      throw TcpCallException.local(Status.Code.INVALID_ARGUMENT, "request header: " + e.getMessage(), e, true);
    }
    p.write(em.bytes());
    if (Wire.HEADER_SIZE + (long) p.size() > s.maxFrameSize()) {
      throw TcpCallException.local(Status.Code.RESOURCE_EXHAUSTED,
          "request frame exceeds the server's max frame size " + s.maxFrameSize(), null, true);
    }
    long id = nextId++;
    if (bind) {
      refs.put(name, ref);
    }
    call.id = id;
    calls.put(id, call);
    writeQueue.add(Wire.frame(FrameKind.REQUEST, h.flags() | em.flags(), id, p.array(), 0, p.size()));
  }

  /** Sends PING; the future completes with the round-trip time when the PONG arrives. */
  public CompletableFuture<Duration> ping() {
    CompletableFuture<Duration> f = new CompletableFuture<>();
    long seq = pingSeq.incrementAndGet();
    long started = System.nanoTime();
    pings.put(seq, f);
    synchronized (lock) {
      if (terminated != null) {
        pings.remove(seq);
        f.completeExceptionally(terminated);
        return f;
      }
      writeQueue.add(Wire.frame(FrameKind.PING, 0, 0, ByteBuffer.allocate(8).putLong(seq).array()));
    }
    return f.thenApply(ignored -> Duration.ofNanos(System.nanoTime() - started));
  }

  /**
   * Pings, and ends the connection if nothing at all arrives within the keepalive timeout: the
   * server or the path to it is gone without a word (a FIN or RST would have ended it already).
   */
  private void keepAlivePing() {
    long sent = System.nanoTime();
    ping();
    long timeout = options.keepAliveTimeout.toNanos();
    try {
      timer.schedule(() -> {
        if (lastFrameNanos - sent < 0) {
          terminate(TcpCallException.local(Status.Code.UNAVAILABLE,
              "keepalive: nothing from the server within " + options.keepAliveTimeout.toMillis() + " ms of a PING", null, false));
        }
      }, timeout, TimeUnit.NANOSECONDS);
    } catch (java.util.concurrent.RejectedExecutionException e) {
      // ended meanwhile
    }
  }

  /** Closes the connection now; calls in flight fail with UNAVAILABLE. */
  @Override
  public void close() {
    terminate(TcpCallException.local(Status.Code.UNAVAILABLE, "connection closed by the client", null, false));
  }

  /** Fails a call in flight on this side and tells the server (CANCEL). */
  private void failLocally(Call call, TcpCallException e) {
    if (calls.remove(call.id, call)) {
      sendCancel(call.id);
      call.deliverClose(e);
    }
  }

  private void sendCancel(long id) {
    enqueue(Wire.frame(FrameKind.CANCEL, 0, id, new byte[0]));
  }

  private void enqueue(byte[] frame) {
    synchronized (lock) {
      if (terminated == null) {
        writeQueue.add(frame);
      }
    }
  }

  // ---------------------------------------------------------------- reader

  private void readLoop(InputStream in) {
    FrameReader fr = new FrameReader(in, options.maxInboundFrameSize);
    try {
      Frame f;
      while ((f = fr.read()) != null) {
        lastFrameNanos = System.nanoTime();
        handle(f);
      }
      terminate(TcpCallException.local(Status.Code.UNAVAILABLE, "connection closed by the server" + goAwaySuffix(), null, false));
    } catch (WireException e) {
      Status.Code code = e.error() == WireException.Error.FRAME_TOO_LARGE ? Status.Code.RESOURCE_EXHAUSTED
          : e.error() == WireException.Error.TRUNCATED ? Status.Code.UNAVAILABLE : Status.Code.INTERNAL;
      terminate(TcpCallException.local(code, "connection error: " + e.getMessage() + goAwaySuffix(), e, false));
    } catch (SSLException e) {
      // With TLS 1.3 a server that refuses this client's certificate says so with an alert after
      // the handshake: it arrives here, on the first read.
      terminate(TcpCallException.local(Status.Code.UNAVAILABLE, "TLS: " + tlsMessage(e) + goAwaySuffix(), e, false));
    } catch (IOException e) {
      terminate(TcpCallException.local(Status.Code.UNAVAILABLE, "connection lost: " + e.getMessage() + goAwaySuffix(), e, false));
    } catch (RuntimeException | Error e) {
      terminate(TcpCallException.local(Status.Code.INTERNAL, "reader failed: " + e, e, false));
      throw e;
    }
  }

  private String goAwaySuffix() {
    synchronized (lock) {
      return goAway == null ? "" : " after GOAWAY (" + describe(goAway.status()) + ")";
    }
  }

  private void handle(Frame f) throws WireException {
    switch (f.kind()) {
      case SETTINGS -> {
        requireConnectionFrame(f);
        Settings s = Settings.parse(f.payload());
        settings = s;
        if (settingsFuture.complete(s) && options.keepAlive && s.idleTimeoutMillis() > 0) {
          long every = Math.max(1, s.idleTimeoutMillis() / 2);
          timer.scheduleAtFixedRate(this::keepAlivePing, every, every, TimeUnit.MILLISECONDS);
        }
      }
      case PING -> {
        requireConnectionFrame(f);
        if (f.payload().length > Wire.MAX_PING_PAYLOAD) {
          throw new WireException(WireException.Error.BAD_PAYLOAD, "PING payload over 64 bytes");
        }
        enqueue(Wire.frame(FrameKind.PONG, 0, 0, f.payload()));
      }
      case PONG -> {
        requireConnectionFrame(f);
        if (f.payload().length == 8) {
          CompletableFuture<Duration> p = pings.remove(ByteBuffer.wrap(f.payload()).getLong());
          if (p != null) {
            p.complete(null);
          }
        }
      }
      case GOAWAY -> {
        requireConnectionFrame(f);
        onGoAway(Wire.parseGoAway(f.payload()));
      }
      case RESPONSE, MESSAGE -> {
        Call call = calls.get(f.id());
        if (call == null) {
          return; // the call ended on this side (deadline, cancel): late answers are dropped
        }
        byte[] msg;
        try {
          msg = Wire.decodeMessage(f.payload(), 0, f.payload().length, f.has(Wire.FLAG_COMPRESSED), options.maxInboundMessageSize);
        } catch (WireException e) {
          Status.Code code = e.error() == WireException.Error.MESSAGE_TOO_LARGE ? Status.Code.RESOURCE_EXHAUSTED : Status.Code.INTERNAL;
          TcpCallException err = TcpCallException.local(code, "response message: " + e.getMessage(), e, false);
          if (f.kind() == FrameKind.MESSAGE) {
            failLocally(call, err); // the stream goes on at the server: cancel it
          } else if (calls.remove(f.id(), call)) {
            call.deliverClose(err); // a RESPONSE ends the call at the server already
          }
          return;
        }
        if (call.unary != (f.kind() == FrameKind.RESPONSE)) {
          failLocally(call, TcpCallException.local(Status.Code.INTERNAL,
              "server sent " + f.kind() + " on a " + (call.unary ? "unary" : "streaming") + " call", null, false));
          return;
        }
        if (call.unary) {
          if (calls.remove(f.id(), call)) {
            call.deliverMessage(msg);
            call.deliverClose(null);
          }
        } else {
          call.deliverMessage(msg);
        }
      }
      case STATUS -> {
        Call call = calls.remove(f.id());
        if (call == null) {
          return;
        }
        com.google.rpc.Status st;
        try {
          st = Wire.parseStatus(f.payload(), 0, f.payload().length);
        } catch (WireException e) {
          call.deliverClose(TcpCallException.local(Status.Code.INTERNAL, "undecodable STATUS: " + e.getMessage(), e, false));
          return;
        }
        if (st.getCode() != 0) {
          call.deliverClose(TcpCallException.fromStatusProto(st, false));
        } else if (call.unary) {
          call.deliverClose(TcpCallException.local(Status.Code.INTERNAL, "unary call ended with status OK and no response", null, false));
        } else {
          call.deliverClose(null);
        }
      }
      case REQUEST, HALF_CLOSE, CANCEL ->
          throw new WireException(WireException.Error.BAD_PAYLOAD, "the server sent a client-only frame: " + f.kind());
    }
  }

  private static void requireConnectionFrame(Frame f) throws WireException {
    if (f.id() != 0) {
      throw new WireException(WireException.Error.BAD_PAYLOAD, f.kind() + " with non-zero id " + f.id());
    }
  }

  private void onGoAway(Wire.GoAway ga) {
    synchronized (lock) {
      if (goAway == null || ga.lastId() < goAway.lastId()) {
        goAway = ga;
      }
    }
    TcpCallException why = TcpCallException.local(Status.Code.UNAVAILABLE, "server sent GOAWAY (" + describe(ga.status()) + ")", null, true);
    if (!settingsFuture.isDone()) { // refused: the status says why
      settingsFuture.completeExceptionally(TcpCallException.fromStatusProto(ga.status().getCode() == 0
          ? ga.status().toBuilder().setCode(Status.Code.UNAVAILABLE.value()).build() : ga.status(), true));
    }
    endFuture.complete(why);
    List<Call> above = new ArrayList<>();
    for (Call c : calls.values()) {
      if (c.id > ga.lastId()) {
        above.add(c);
      }
    }
    for (Call c : above) {
      if (calls.remove(c.id, c)) {
        c.deliverClose(TcpCallException.local(Status.Code.UNAVAILABLE,
            "server going away (GOAWAY last id " + ga.lastId() + ": " + describe(ga.status()) + "); the call was not processed and is safe to retry",
            null, true));
      }
    }
  }

  private static String describe(com.google.rpc.Status st) {
    return Status.fromCodeValue(st.getCode()).getCode() + (st.getMessage().isEmpty() ? "" : " \"" + st.getMessage() + "\"");
  }

  // ---------------------------------------------------------------- writer

  private void writeLoop(OutputStream out) {
    try {
      while (true) {
        byte[] f = writeQueue.take();
        if (f == CLOSE_WRITER) {
          return;
        }
        out.write(f);
        while ((f = writeQueue.poll()) != null) {
          if (f == CLOSE_WRITER) {
            out.flush();
            return;
          }
          out.write(f);
        }
        out.flush();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (IOException e) {
      writeFailed(TcpCallException.local(Status.Code.UNAVAILABLE, "write failed: " + e.getMessage(), e, false));
    }
  }

  /**
   * A write failed: the connection takes no more calls, but the reader goes on, so that a GOAWAY
   * the server sent before it closed still tells which calls it never saw (they are safe to
   * retry). The server has closed its side (that is what fails a write), so the reader ends soon;
   * if it has not within a second, the connection ends anyway.
   */
  private void writeFailed(TcpCallException why) {
    synchronized (lock) {
      if (terminated != null || writeFailed != null) {
        return;
      }
      writeFailed = why;
      writeQueue.clear();
    }
    endFuture.complete(why);
    try {
      timer.schedule(() -> terminate(why), 1, TimeUnit.SECONDS);
    } catch (java.util.concurrent.RejectedExecutionException e) {
      terminate(why); // ended meanwhile
    }
  }

  // ---------------------------------------------------------------- shutdown

  private void terminate(TcpCallException why) {
    synchronized (lock) {
      if (terminated != null) {
        return;
      }
      terminated = why;
      writeQueue.clear();
      writeQueue.add(CLOSE_WRITER);
    }
    settingsFuture.completeExceptionally(why);
    endFuture.complete(why);
    closeQuietly(transport);
    timer.shutdownNow();
    for (Long id : new ArrayList<>(calls.keySet())) {
      Call c = calls.remove(id);
      if (c != null) {
        c.deliverClose(TcpCallException.local(why.getStatus().getCode(), why.getStatus().getDescription(), why.getCause(), false));
      }
    }
    for (Long seq : new ArrayList<>(pings.keySet())) {
      CompletableFuture<Duration> p = pings.remove(seq);
      if (p != null) {
        p.completeExceptionally(why);
      }
    }
    terminationFuture.complete(why);
  }

  private static void closeQuietly(Closeable s) {
    try {
      s.close();
    } catch (IOException ignored) {
      // nothing to do
    }
  }

  // ---------------------------------------------------------------- helpers

  /** Converts io.grpc.Metadata to wire pairs: "-bin" keys carry raw bytes, others ASCII text. */
  public static List<RequestHeader.Entry> metadataEntries(Metadata md) {
    if (md == null) {
      return List.of();
    }
    List<RequestHeader.Entry> out = new ArrayList<>();
    for (String key : md.keys()) {
      if (key.endsWith(Metadata.BINARY_HEADER_SUFFIX)) {
        Iterable<byte[]> vs = md.getAll(Metadata.Key.of(key, Metadata.BINARY_BYTE_MARSHALLER));
        if (vs != null) {
          vs.forEach(v -> out.add(new RequestHeader.Entry(key, v)));
        }
      } else {
        Iterable<String> vs = md.getAll(Metadata.Key.of(key, Metadata.ASCII_STRING_MARSHALLER));
        if (vs != null) {
          vs.forEach(v -> out.add(new RequestHeader.Entry(key, v.getBytes(StandardCharsets.US_ASCII))));
        }
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- call state

  /**
   * A call in flight on this connection. Its listener hears exactly one onClose, and no
   * onMessage after it.
   */
  public final class Call {
    final boolean unary;
    private final Listener listener;
    private final AtomicBoolean closed = new AtomicBoolean();
    volatile long id;
    volatile ScheduledFuture<?> deadlineTimer;

    Call(boolean unary, Listener listener) {
      this.unary = unary;
      this.listener = listener;
    }

    /** The call id on the connection. */
    public long id() {
      return id;
    }

    /** The connection the call runs on. */
    public TcpConnection connection() {
      return TcpConnection.this;
    }

    /**
     * Queues a MESSAGE of a streaming call; false if the call is no longer in flight. A message
     * over the server's limits fails the call locally with RESOURCE_EXHAUSTED (and a CANCEL).
     */
    public boolean sendMessage(byte[] msg, boolean compress) {
      if (unary) {
        throw new IllegalStateException("a unary call's message goes in its REQUEST");
      }
      if (calls.get(id) != this) {
        return false;
      }
      Settings s = settings;
      if (msg.length > s.maxMessageSize()) {
        failLocally(this, TcpCallException.local(Status.Code.RESOURCE_EXHAUSTED,
            "message of " + msg.length + " bytes exceeds the server's max message size " + s.maxMessageSize(), null, false));
        return false;
      }
      Wire.EncodedMessage em = Wire.encodeMessage(msg, compress ? (int) Math.min(s.compressThreshold(), Integer.MAX_VALUE) : 0);
      if (Wire.HEADER_SIZE + (long) em.bytes().length > s.maxFrameSize()) {
        failLocally(this, TcpCallException.local(Status.Code.RESOURCE_EXHAUSTED,
            "message frame exceeds the server's max frame size " + s.maxFrameSize(), null, false));
        return false;
      }
      enqueue(Wire.frame(FrameKind.MESSAGE, em.flags(), id, em.bytes()));
      return true;
    }

    /** Tells the server no more messages follow (HALF_CLOSE); responses keep coming. */
    public void halfClose() {
      if (calls.get(id) == this) {
        enqueue(Wire.frame(FrameKind.HALF_CLOSE, 0, id, new byte[0]));
      }
    }

    /**
     * Gives the call up on this side: forgets it, without telling the listener, and sends CANCEL
     * so the server stops working on it.
     */
    public void abandon() {
      if (calls.remove(id, this)) {
        closed.set(true);
        cancelTimer();
        sendCancel(id);
      }
    }

    void deliverMessage(byte[] msg) {
      if (!closed.get()) {
        listener.onMessage(msg);
      }
    }

    void deliverClose(TcpCallException e) {
      if (closed.compareAndSet(false, true)) {
        cancelTimer();
        listener.onClose(e);
      }
    }

    void cancelTimer() {
      ScheduledFuture<?> t = deadlineTimer;
      if (t != null) {
        t.cancel(false);
      }
    }
  }
}
