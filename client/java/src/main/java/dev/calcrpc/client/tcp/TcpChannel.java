package dev.calcrpc.client.tcp;

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
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.stub.StreamObserver;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.ByteArrayInputStream;
import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.ByteBuffer;
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
import java.util.concurrent.atomic.AtomicLong;

/**
 * One raw TCP connection to calcd (PROTOCOL.md): any number of concurrent calls, paired with their
 * answers by call id. A reader thread reads frames and completes calls; a writer thread writes
 * whole frames from a queue, coalescing whatever is queued into one socket write, so no caller
 * ever blocks on the socket and the reader never waits for the writer.
 *
 * <p>Futures complete and stream observers are called on the reader thread, in frame order: do not
 * block there (use the *Async variants of CompletableFuture to move work elsewhere).
 *
 * <p>Failures are {@link TcpCallException}s, the io.grpc StatusRuntimeException gRPC stubs throw.
 */
public final class TcpChannel implements AutoCloseable {

  /** Connection options. */
  public static final class Options {
    Duration connectTimeout = Duration.ofSeconds(10);
    int maxInboundMessageSize = Wire.DEFAULT_MAX_MESSAGE_SIZE;
    int maxInboundFrameSize = Wire.DEFAULT_MAX_FRAME_SIZE;
    boolean keepAlive = true;

    public static Options defaults() {
      return new Options();
    }

    /** Time allowed to connect and receive the server's SETTINGS (default 10 s). */
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
  }

  private static final byte[] CLOSE_WRITER = new byte[0];
  private static final long MAX_CALL_ID = 0xFFFF_FFFFL;

  private final Closeable transport;
  private final Options options;
  private final String authority;
  private final LinkedBlockingQueue<byte[]> writeQueue = new LinkedBlockingQueue<>();
  private final Map<Long, Call> calls = new ConcurrentHashMap<>();
  private final Map<Long, CompletableFuture<Duration>> pings = new ConcurrentHashMap<>();
  private final AtomicLong pingSeq = new AtomicLong();
  private final CompletableFuture<Settings> settingsFuture = new CompletableFuture<>();
  private final ScheduledThreadPoolExecutor timer;
  private final Thread reader;
  private final Thread writer;
  private volatile Settings settings = Settings.DEFAULTS;

  // Guarded by lock: ids, refs and the connection state change together with the order in which
  // REQUEST frames are queued, so ids grow and a ref's binding precedes its bare uses.
  private final Object lock = new Object();
  private long nextId = 1;
  private final Map<String, Integer> refs = new HashMap<>();
  private Wire.GoAway goAway;
  private TcpCallException terminated;

  private TcpChannel(InputStream rawIn, OutputStream rawOut, Closeable transport, Options options, String authority) {
    this.transport = transport;
    this.options = options;
    this.authority = authority;
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

  /** Connects to host:port with default options. */
  public static TcpChannel connect(String host, int port) {
    return connect(new InetSocketAddress(host, port), Options.defaults());
  }

  /**
   * Connects, sends the preface and waits for the server's SETTINGS.
   *
   * @throws TcpCallException UNAVAILABLE when the connection fails, or the GOAWAY's status when the
   *     server refuses the connection (FAILED_PRECONDITION for a version it does not speak,
   *     RESOURCE_EXHAUSTED past its max connections)
   */
  public static TcpChannel connect(InetSocketAddress address, Options options) {
    String authority = address.getHostString() + ":" + address.getPort();
    Socket socket = new Socket();
    TcpChannel ch;
    try {
      socket.setTcpNoDelay(true);
      socket.setKeepAlive(true);
      socket.connect(address, (int) options.connectTimeout.toMillis());
      ch = new TcpChannel(socket.getInputStream(), socket.getOutputStream(), socket, options, authority);
    } catch (IOException e) {
      closeQuietly(socket);
      throw TcpCallException.local(Status.Code.UNAVAILABLE, "connect " + authority + ": " + e.getMessage(), e, true);
    }
    return ch.handshake();
  }

  /**
   * Speaks the protocol over an already connected byte stream pair (a TLS socket, a tunnel, a
   * test pipe): sends the preface and waits for the server's SETTINGS. {@code transport} is closed
   * when the channel closes.
   */
  public static TcpChannel over(InputStream in, OutputStream out, Closeable transport, Options options, String authority) {
    return new TcpChannel(in, out, transport, options, authority).handshake();
  }

  private TcpChannel handshake() {
    writer.start();
    reader.start();
    try {
      settingsFuture.get(options.connectTimeout.toMillis(), TimeUnit.MILLISECONDS);
    } catch (ExecutionException e) {
      close();
      throw e.getCause() instanceof TcpCallException t ? t
          : TcpCallException.local(Status.Code.UNAVAILABLE, "connect " + authority + ": " + e.getCause(), e.getCause(), true);
    } catch (TimeoutException e) {
      close();
      throw TcpCallException.local(Status.Code.UNAVAILABLE, "connect " + authority + ": no SETTINGS from the server", e, true);
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

  /** Calls in flight. */
  public int activeCalls() {
    return calls.size();
  }

  // ---------------------------------------------------------------- calls

  /**
   * Starts a unary call. The future completes with the response, or exceptionally with a
   * {@link TcpCallException}; cancelling the future sends CANCEL.
   */
  public <Req, Resp> TcpCallFuture<Resp> unaryCall(MethodDescriptor<Req, Resp> method, Req request, TcpCallOptions opts) {
    if (method.getType() != MethodDescriptor.MethodType.UNARY) {
      throw new IllegalArgumentException(method.getFullMethodName() + " is not unary");
    }
    UnaryCall<Resp> call = new UnaryCall<>(method);
    byte[] msg;
    try {
      msg = marshal(method.getRequestMarshaller(), request);
    } catch (RuntimeException e) {
      call.future.completeExceptionally(TcpCallException.local(Status.Code.INTERNAL, "marshal request: " + e, e, true));
      return call.future;
    }
    start(call, method, msg, opts);
    return call.future;
  }

  /**
   * Starts a streaming call (client and server streaming, as CalculateStream). Responses go to
   * {@code responses} on the reader thread; it ends with onCompleted on STATUS OK or onError with
   * a {@link TcpCallException}. Send with the returned stream, then half-close it.
   */
  public <Req, Resp> TcpClientStream<Req, Resp> streamCall(
      MethodDescriptor<Req, Resp> method, StreamObserver<Resp> responses, TcpCallOptions opts) {
    if (method.getType() == MethodDescriptor.MethodType.UNARY) {
      throw new IllegalArgumentException(method.getFullMethodName() + " is unary");
    }
    StreamCall<Req, Resp> call = new StreamCall<>(method, responses);
    call.stream = new TcpClientStream<>(this, call);
    start(call, method, null, opts);
    return call.stream;
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

  /** Closes the connection now; calls in flight fail with UNAVAILABLE. */
  @Override
  public void close() {
    terminate(TcpCallException.local(Status.Code.UNAVAILABLE, "connection closed by the client", null, false));
  }

  // Starts a call: assigns its id and method ref and queues its REQUEST, or fails it.
  private void start(Call call, MethodDescriptor<?, ?> method, byte[] msg, TcpCallOptions opts) {
    String name = "/" + method.getFullMethodName();
    Settings s = settings;
    Wire.EncodedMessage em;
    if (msg == null) {
      em = new Wire.EncodedMessage(new byte[0], false);
    } else if (msg.length > s.maxMessageSize()) {
      call.fail(TcpCallException.local(Status.Code.RESOURCE_EXHAUSTED,
          "request message of " + msg.length + " bytes exceeds the server's max message size " + s.maxMessageSize(), null, true));
      return;
    } else {
      em = Wire.encodeMessage(msg, opts.compression() ? (int) Math.min(s.compressThreshold(), Integer.MAX_VALUE) : 0);
    }
    List<RequestHeader.Entry> md = metadataEntries(opts.metadata());
    Deadline deadline = opts.deadline();
    TcpCallException err = null;
    synchronized (lock) {
      if (terminated != null) {
        err = TcpCallException.local(Status.Code.UNAVAILABLE, "connection is closed: " + terminated.getStatus().getDescription(), null, true);
      } else if (goAway != null) {
        err = TcpCallException.local(Status.Code.UNAVAILABLE, "connection is going away (GOAWAY: " + describe(goAway.status()) + ")", null, true);
      } else if (deadline != null && deadline.isExpired()) {
        err = TcpCallException.local(Status.Code.DEADLINE_EXCEEDED, "deadline exceeded before the call started", null, true);
      } else if (nextId > MAX_CALL_ID) {
        err = TcpCallException.local(Status.Code.UNAVAILABLE, "call ids exhausted on this connection", null, true);
      } else {
        Integer ref = refs.get(name);
        boolean bind = ref == null;
        if (bind && refs.size() >= Wire.MAX_METHOD_REFS) {
          err = TcpCallException.local(Status.Code.RESOURCE_EXHAUSTED, "more than " + Wire.MAX_METHOD_REFS + " methods on one connection", null, true);
        } else {
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
            h = null;
            err = TcpCallException.local(Status.Code.INVALID_ARGUMENT, "request header: " + e.getMessage(), e, true);
          }
          if (h != null) {
            p.write(em.bytes());
            if (Wire.HEADER_SIZE + (long) p.size() > s.maxFrameSize()) {
              err = TcpCallException.local(Status.Code.RESOURCE_EXHAUSTED,
                  "request frame exceeds the server's max frame size " + s.maxFrameSize(), null, true);
            } else {
              long id = nextId++;
              if (bind) {
                refs.put(name, ref);
              }
              call.id = id;
              calls.put(id, call);
              writeQueue.add(Wire.frame(FrameKind.REQUEST, h.flags() | em.flags(), id, p.array(), 0, p.size()));
            }
          }
        }
      }
    }
    if (err != null) {
      call.fail(err);
      return;
    }
    if (deadline != null) {
      call.deadlineTimer = timer.schedule(() -> expire(call), deadline.timeRemaining(TimeUnit.NANOSECONDS), TimeUnit.NANOSECONDS);
      if (call.finished) {
        call.deadlineTimer.cancel(false);
      }
    }
  }

  private void expire(Call call) {
    if (calls.remove(call.id, call)) {
      sendCancel(call.id);
      call.complete(TcpCallException.local(Status.Code.DEADLINE_EXCEEDED, "deadline exceeded", null, false));
    }
  }

  /** Sends CANCEL for a call in flight; the server answers its final STATUS (normally CANCELLED). */
  void cancel(Call call) {
    if (calls.get(call.id) == call) {
      sendCancel(call.id);
    }
  }

  /** Forgets a call this side has given up on (a cancelled future) and tells the server. */
  void abandon(Call call) {
    if (calls.remove(call.id, call)) {
      sendCancel(call.id);
      call.cancelTimer();
    }
  }

  /** Fails a call in flight on this side and tells the server. */
  void failLocally(Call call, TcpCallException e) {
    if (calls.remove(call.id, call)) {
      sendCancel(call.id);
      call.complete(e);
    }
  }

  private void sendCancel(long id) {
    enqueue(Wire.frame(FrameKind.CANCEL, 0, id, new byte[0]));
  }

  /** Queues a MESSAGE of a streaming call; false if the call is no longer in flight. */
  boolean sendMessage(Call call, byte[] msg, boolean compression) {
    if (calls.get(call.id) != call) {
      return false;
    }
    Settings s = settings;
    if (msg.length > s.maxMessageSize()) {
      failLocally(call, TcpCallException.local(Status.Code.RESOURCE_EXHAUSTED,
          "message of " + msg.length + " bytes exceeds the server's max message size " + s.maxMessageSize(), null, false));
      return false;
    }
    Wire.EncodedMessage em = Wire.encodeMessage(msg, compression ? (int) Math.min(s.compressThreshold(), Integer.MAX_VALUE) : 0);
    if (Wire.HEADER_SIZE + (long) em.bytes().length > s.maxFrameSize()) {
      failLocally(call, TcpCallException.local(Status.Code.RESOURCE_EXHAUSTED,
          "message frame exceeds the server's max frame size " + s.maxFrameSize(), null, false));
      return false;
    }
    enqueue(Wire.frame(FrameKind.MESSAGE, em.flags(), call.id, em.bytes()));
    return true;
  }

  void sendHalfClose(Call call) {
    if (calls.get(call.id) == call) {
      enqueue(Wire.frame(FrameKind.HALF_CLOSE, 0, call.id, new byte[0]));
    }
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
        handle(f);
      }
      terminate(TcpCallException.local(Status.Code.UNAVAILABLE, "connection closed by the server" + goAwaySuffix(), null, false));
    } catch (WireException e) {
      Status.Code code = e.error() == WireException.Error.FRAME_TOO_LARGE ? Status.Code.RESOURCE_EXHAUSTED
          : e.error() == WireException.Error.TRUNCATED ? Status.Code.UNAVAILABLE : Status.Code.INTERNAL;
      terminate(TcpCallException.local(code, "connection error: " + e.getMessage() + goAwaySuffix(), e, false));
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
          timer.scheduleAtFixedRate(this::ping, every, every, TimeUnit.MILLISECONDS);
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
            call.complete(err); // a RESPONSE ends the call at the server already
          }
          return;
        }
        call.onMessage(f.kind(), msg);
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
          call.complete(TcpCallException.local(Status.Code.INTERNAL, "undecodable STATUS: " + e.getMessage(), e, false));
          return;
        }
        call.onStatus(st);
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
    if (!settingsFuture.isDone()) { // refused: the status says why
      settingsFuture.completeExceptionally(TcpCallException.fromStatusProto(ga.status().getCode() == 0
          ? ga.status().toBuilder().setCode(Status.Code.UNAVAILABLE.value()).build() : ga.status(), true));
    }
    List<Call> above = new ArrayList<>();
    for (Call c : calls.values()) {
      if (c.id > ga.lastId()) {
        above.add(c);
      }
    }
    for (Call c : above) {
      if (calls.remove(c.id, c)) {
        c.complete(TcpCallException.local(Status.Code.UNAVAILABLE,
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
      terminate(TcpCallException.local(Status.Code.UNAVAILABLE, "write failed: " + e.getMessage(), e, false));
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
    closeQuietly(transport);
    timer.shutdownNow();
    for (Long id : new ArrayList<>(calls.keySet())) {
      Call c = calls.remove(id);
      if (c != null) {
        c.complete(TcpCallException.local(why.getStatus().getCode(), why.getStatus().getDescription(), why.getCause(), false));
      }
    }
    for (Long seq : new ArrayList<>(pings.keySet())) {
      CompletableFuture<Duration> p = pings.remove(seq);
      if (p != null) {
        p.completeExceptionally(why);
      }
    }
  }

  private static void closeQuietly(Closeable s) {
    try {
      s.close();
    } catch (IOException ignored) {
      // nothing to do
    }
  }

  // ---------------------------------------------------------------- helpers

  static <T> byte[] marshal(MethodDescriptor.Marshaller<T> m, T value) {
    if (value instanceof com.google.protobuf.MessageLite ml) {
      return ml.toByteArray();
    }
    try (InputStream in = m.stream(value)) {
      return in.readAllBytes();
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  static <T> T unmarshal(MethodDescriptor.Marshaller<T> m, byte[] b) {
    return m.parse(new ByteArrayInputStream(b));
  }

  /** Converts io.grpc.Metadata to wire pairs: "-bin" keys carry raw bytes, others ASCII text. */
  static List<RequestHeader.Entry> metadataEntries(Metadata md) {
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
          vs.forEach(v -> out.add(new RequestHeader.Entry(key, v.getBytes(java.nio.charset.StandardCharsets.US_ASCII))));
        }
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- call state

  /** A call in flight. Exactly one of onStatus / complete(error) / a unary RESPONSE ends it. */
  abstract static class Call {
    volatile long id;
    volatile ScheduledFuture<?> deadlineTimer;
    volatile boolean finished;

    /** A RESPONSE or MESSAGE for this call (decoded message bytes). */
    abstract void onMessage(FrameKind kind, byte[] msg);

    /** The call's STATUS; the call was already removed from the channel. */
    abstract void onStatus(com.google.rpc.Status st);

    /** Ends the call with an error; the call was already removed from the channel (or never added). */
    abstract void complete(TcpCallException e);

    void fail(TcpCallException e) {
      complete(e);
    }

    void cancelTimer() {
      finished = true;
      ScheduledFuture<?> t = deadlineTimer;
      if (t != null) {
        t.cancel(false);
      }
    }
  }

  private final class UnaryCall<Resp> extends Call {
    final MethodDescriptor<?, Resp> method;
    final TcpCallFuture<Resp> future;

    UnaryCall(MethodDescriptor<?, Resp> method) {
      this.method = method;
      this.future = new TcpCallFuture<>(TcpChannel.this, this);
    }

    @Override
    void onMessage(FrameKind kind, byte[] msg) {
      if (!calls.remove(id, this)) {
        return;
      }
      cancelTimer();
      if (kind != FrameKind.RESPONSE) {
        sendCancel(id);
        future.completeExceptionally(TcpCallException.local(Status.Code.INTERNAL, "server sent MESSAGE on a unary call", null, false));
        return;
      }
      Resp r;
      try {
        r = unmarshal(method.getResponseMarshaller(), msg);
      } catch (RuntimeException e) {
        future.completeExceptionally(TcpCallException.local(Status.Code.INTERNAL, "invalid response message: " + e.getMessage(), e, false));
        return;
      }
      future.complete(r);
    }

    @Override
    void onStatus(com.google.rpc.Status st) {
      cancelTimer();
      if (st.getCode() == 0) {
        future.completeExceptionally(TcpCallException.local(Status.Code.INTERNAL, "unary call ended with status OK and no response", null, false));
      } else {
        future.completeExceptionally(TcpCallException.fromStatusProto(st, false));
      }
    }

    @Override
    void complete(TcpCallException e) {
      cancelTimer();
      future.completeExceptionally(e);
    }
  }

  static final class StreamCall<Req, Resp> extends Call {
    final MethodDescriptor<Req, Resp> method;
    final StreamObserver<Resp> observer;
    TcpClientStream<Req, Resp> stream;
    private boolean closed; // guarded by this: the observer is called by one thread at a time, never after its end

    StreamCall(MethodDescriptor<Req, Resp> method, StreamObserver<Resp> observer) {
      this.method = method;
      this.observer = observer;
    }

    @Override
    synchronized void onMessage(FrameKind kind, byte[] msg) {
      if (closed) {
        return;
      }
      TcpChannel ch = stream.channel();
      if (kind != FrameKind.MESSAGE) {
        ch.failLocally(this, TcpCallException.local(Status.Code.INTERNAL, "server sent RESPONSE on a streaming call", null, false));
        return;
      }
      Resp r;
      try {
        r = unmarshal(method.getResponseMarshaller(), msg);
      } catch (RuntimeException e) {
        ch.failLocally(this, TcpCallException.local(Status.Code.INTERNAL, "invalid stream message: " + e.getMessage(), e, false));
        return;
      }
      try {
        observer.onNext(r);
      } catch (RuntimeException e) {
        ch.failLocally(this, TcpCallException.local(Status.Code.CANCELLED, "response observer failed: " + e, e, false));
      }
    }

    @Override
    synchronized void onStatus(com.google.rpc.Status st) {
      if (closed) {
        return;
      }
      closed = true;
      cancelTimer();
      stream.markDone();
      if (st.getCode() == 0) {
        observer.onCompleted();
      } else {
        observer.onError(TcpCallException.fromStatusProto(st, false));
      }
    }

    @Override
    synchronized void complete(TcpCallException e) {
      if (closed) {
        return;
      }
      closed = true;
      cancelTimer();
      stream.markDone();
      observer.onError(e);
    }
  }
}
