package dev.calcrpc.client.tcp;

import io.grpc.Attributes;
import io.grpc.CallCredentials;
import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.Context;
import io.grpc.Contexts;
import io.grpc.Deadline;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.SecurityLevel;
import io.grpc.Status;
import io.grpc.SynchronizationContext;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Executor;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * One call on a {@link TcpChannel}, as grpc-java's ClientCall: the frames of PROTOCOL.md behind the
 * interface every stub drives. A unary call's REQUEST carries its message, so it is sent at
 * halfClose; a streaming call's REQUEST goes as soon as a connection is picked, its messages
 * (buffered until then) follow as MESSAGE frames.
 *
 * <p>Every event (the caller's start, sendMessage, halfClose, cancel; a pick; a connection's
 * answer; the deadline) runs in the call's SynchronizationContext, one at a time and in order,
 * without locks; the listener hears of it on the call's executor (the CallOptions executor, or the
 * channel's), serialized, honouring request(n).
 */
final class TcpClientCall<ReqT, RespT> extends ClientCall<ReqT, RespT> {
  private static final Logger log = Logger.getLogger(TcpClientCall.class.getName());

  /** The codes call credentials may not fail a call with (gRPC A54): they become INTERNAL. */
  private static final Set<Status.Code> CONTROL_PLANE_ILLEGAL = EnumSet.of(Status.Code.OK, Status.Code.INVALID_ARGUMENT,
      Status.Code.NOT_FOUND, Status.Code.ALREADY_EXISTS, Status.Code.FAILED_PRECONDITION, Status.Code.ABORTED,
      Status.Code.OUT_OF_RANGE, Status.Code.DATA_LOSS);

  /** What {@code closed} holds once the call ended with OK. */
  private static final TcpCallException CLOSED_OK = TcpCallException.local(Status.Code.OK, "", null, false);

  private final TcpChannel channel;
  private final MethodDescriptor<ReqT, RespT> method;
  private final CallOptions callOptions;
  private final Context context;
  private final boolean unary;
  private final SynchronizationContext sync;
  private final SerializingExecutor callbacks;
  private final AtomicBoolean startCalled = new AtomicBoolean();
  private volatile boolean compress = true;
  private volatile boolean done;

  // Confined to sync.
  private Metadata headers;
  private Deadline deadline;
  private boolean started;
  private boolean halfClosed;
  private boolean credentialsApplied;
  private boolean attemptRunning; // picking, waiting to retry, or on a connection
  private byte[] unaryMessage;
  private final List<byte[]> pendingSends = new ArrayList<>();
  private TcpConnection.Call attempt;
  private int attempts;
  private int idempotentRetries;
  private TcpCallException closed;
  private ScheduledFuture<?> deadlineTimer;
  private Context.CancellationListener contextListener;
  private Runnable withdrawPick;

  // Delivery to the listener, guarded by delivery.
  private final Object delivery = new Object();
  private Listener<RespT> listener;
  private final ArrayDeque<RespT> inbox = new ArrayDeque<>();
  private int demand;
  private boolean readyPending;
  private Status closeStatus;
  private Metadata closeTrailers;
  private boolean closeDropsMessages;
  private boolean closeDelivered;
  private boolean headersDelivered; // only on the callbacks executor

  TcpClientCall(TcpChannel channel, MethodDescriptor<ReqT, RespT> method, CallOptions callOptions) {
    this.channel = channel;
    this.method = method;
    this.callOptions = callOptions;
    this.context = Context.current();
    this.unary = method.getType() == MethodDescriptor.MethodType.UNARY;
    this.sync = new SynchronizationContext((t, e) -> {
      log.log(Level.SEVERE, "uncaught exception in a raw TCP call", e);
      closeWith(TcpCallException.local(Status.Code.INTERNAL, "client failure: " + e, e, false));
    });
    Executor e = callOptions.getExecutor() != null ? callOptions.getExecutor() : channel.callbackExecutor;
    this.callbacks = new SerializingExecutor(e);
    if ("identity".equals(callOptions.getCompressor())) {
      compress = false;
    }
  }

  // ---------------------------------------------------------------- the caller's side

  @Override
  public void start(Listener<RespT> responseListener, Metadata requestHeaders) {
    if (responseListener == null || requestHeaders == null) {
      throw new NullPointerException("listener and headers are required");
    }
    if (!startCalled.compareAndSet(false, true)) {
      throw new IllegalStateException("call already started");
    }
    Metadata h = new Metadata();
    h.merge(requestHeaders);
    synchronized (delivery) {
      listener = responseListener;
    }
    sync.execute(() -> onStart(h));
  }

  @Override
  public void request(int numMessages) {
    if (numMessages < 0) {
      throw new IllegalArgumentException("numMessages must not be negative");
    }
    synchronized (delivery) {
      demand = (int) Math.min(Integer.MAX_VALUE, (long) demand + numMessages);
    }
    scheduleDelivery();
  }

  @Override
  public void cancel(String message, Throwable cause) {
    if (message == null && cause == null) {
      message = "cancelled without a reason";
    }
    String m = message == null ? "call cancelled" : message;
    sync.execute(() -> {
      if (attempt != null) {
        attempt.abandon(); // sends CANCEL
      }
      closeWith(TcpCallException.local(Status.Code.CANCELLED, m, cause, false));
    });
  }

  /** The channel's shutdownNow ends the call with status. */
  void cancelByChannel(Status status) {
    sync.execute(() -> {
      if (attempt != null) {
        attempt.abandon();
      }
      closeWith(TcpCallException.local(status.getCode(), status.getDescription(), status.getCause(), false));
    });
  }

  @Override
  public void halfClose() {
    sync.execute(() -> {
      if (halfClosed) {
        return;
      }
      halfClosed = true;
      if (closed != null) {
        return;
      }
      if (unary) {
        maybeSend();
      } else if (attempt != null) {
        attempt.halfClose();
      }
    });
  }

  @Override
  public void sendMessage(ReqT message) {
    byte[] bytes = marshal(message);
    sync.execute(() -> {
      if (closed != null) {
        return;
      }
      if (halfClosed) {
        closeWith(TcpCallException.local(Status.Code.INTERNAL, "sendMessage after halfClose", null, false));
      } else if (unary) {
        if (unaryMessage != null) {
          closeWith(TcpCallException.local(Status.Code.INTERNAL, "more than one request message on a unary call", null, false));
          return;
        }
        unaryMessage = bytes;
      } else if (attempt != null) {
        attempt.sendMessage(bytes, compress);
      } else {
        pendingSends.add(bytes);
      }
    });
  }

  @Override
  public boolean isReady() {
    return !done;
  }

  @Override
  public void setMessageCompression(boolean enabled) {
    compress = enabled;
  }

  @Override
  public Attributes getAttributes() {
    return Attributes.EMPTY;
  }

  private byte[] marshal(ReqT message) {
    if (message instanceof com.google.protobuf.MessageLite m) {
      return m.toByteArray();
    }
    try (InputStream in = method.streamRequest(message)) {
      return in.readAllBytes();
    } catch (IOException e) {
      throw new IllegalStateException("marshal request: " + e, e);
    }
  }

  // ---------------------------------------------------------------- the state machine (in sync)

  private void onStart(Metadata h) {
    started = true;
    headers = h;
    if (closed != null) {
      scheduleDelivery(); // cancelled before start: the listener hears it now
      return;
    }
    if (!channel.callStarted(this)) {
      closeWith(TcpCallException.local(Status.Code.UNAVAILABLE, "channel shut down", null, true));
      return;
    }
    deadline = earlier(callOptions.getDeadline(), context.getDeadline());
    if (deadline != null) {
      long nanos = deadline.timeRemaining(TimeUnit.NANOSECONDS);
      if (nanos <= 0) {
        closeWith(TcpCallException.local(Status.Code.DEADLINE_EXCEEDED, "deadline exceeded before the call started", null, true));
        return;
      }
      deadlineTimer = channel.scheduler.schedule(() -> sync.execute(this::onDeadline), nanos, TimeUnit.NANOSECONDS);
    }
    contextListener = c -> sync.execute(() -> {
      Status s = Contexts.statusFromCancelled(c);
      if (s != null && closed == null) {
        if (attempt != null) {
          attempt.abandon();
        }
        closeWith(TcpCallException.local(s.getCode(), s.getDescription() == null ? "context cancelled" : s.getDescription(), s.getCause(), false));
      }
    });
    context.addListener(contextListener, Runnable::run); // a context that cannot be cancelled ignores it
    applyCredentials(credentialsList(), 0);
  }

  private static Deadline earlier(Deadline a, Deadline b) {
    if (a == null) {
      return b;
    }
    return b == null ? a : a.minimum(b);
  }

  private List<CallCredentials> credentialsList() {
    List<CallCredentials> l = new ArrayList<>(2);
    if (channel.token != null) {
      l.add(channel.token);
    }
    if (callOptions.getCredentials() != null) {
      l.add(callOptions.getCredentials());
    }
    return l;
  }

  private void applyCredentials(List<CallCredentials> creds, int i) {
    if (closed != null) {
      return;
    }
    if (i == creds.size()) {
      credentialsApplied = true;
      maybeSend();
      return;
    }
    CallCredentials.RequestInfo info = new CallCredentials.RequestInfo() {
      @Override
      public MethodDescriptor<?, ?> getMethodDescriptor() {
        return method;
      }

      @Override
      public CallOptions getCallOptions() {
        return callOptions;
      }

      @Override
      public SecurityLevel getSecurityLevel() {
        return channel.secure ? SecurityLevel.PRIVACY_AND_INTEGRITY : SecurityLevel.NONE;
      }

      @Override
      public String getAuthority() {
        return callOptions.getAuthority() != null ? callOptions.getAuthority() : channel.authority();
      }

      @Override
      public Attributes getTransportAttrs() {
        return Attributes.EMPTY;
      }
    };
    try {
      creds.get(i).applyRequestMetadata(info, channel.callbackExecutor, new CallCredentials.MetadataApplier() {
        @Override
        public void apply(Metadata md) {
          sync.execute(() -> {
            headers.merge(md);
            applyCredentials(creds, i + 1);
          });
        }

        @Override
        public void fail(Status status) {
          Status.Code code = CONTROL_PLANE_ILLEGAL.contains(status.getCode()) ? Status.Code.INTERNAL : status.getCode();
          String desc = status.getDescription() == null ? "call credentials failed" : status.getDescription();
          sync.execute(() -> closeWith(TcpCallException.local(code, desc, status.getCause(), true)));
        }
      });
    } catch (RuntimeException e) {
      closeWith(TcpCallException.local(Status.Code.UNAUTHENTICATED, "call credentials failed: " + e, e, true));
    }
  }

  /** Starts an attempt if the call is ready for one: credentials applied, and a unary call half-closed. */
  private void maybeSend() {
    if (closed != null || !credentialsApplied || attemptRunning || (unary && !halfClosed)) {
      return;
    }
    if (unary && unaryMessage == null) {
      closeWith(TcpCallException.local(Status.Code.INTERNAL, "a unary call half-closed without a request message", null, true));
      return;
    }
    attemptRunning = true;
    attempts++;
    boolean wait = callOptions.isWaitForReady() || channel.waitForReady;
    withdrawPick = channel.pick(wait, new TcpChannel.PickListener() {
      @Override
      public void picked(TcpConnection conn) {
        sync.execute(() -> onPicked(conn));
      }

      @Override
      public void failed(TcpCallException why) {
        sync.execute(() -> {
          attemptRunning = false;
          closeWith(why);
        });
      }
    });
  }

  private void onPicked(TcpConnection conn) {
    withdrawPick = null;
    if (closed != null) {
      attemptRunning = false;
      return;
    }
    AttemptListener l = new AttemptListener();
    TcpConnection.Call a;
    try {
      a = conn.start(method.getFullMethodName(), unary ? unaryMessage : null, deadline,
          TcpConnection.metadataEntries(headers), compress, l);
    } catch (TcpCallException e) {
      attemptRunning = false;
      onAttemptFailed(e, true);
      return;
    }
    attempt = a;
    l.call = a;
    if (!unary) {
      for (byte[] m : pendingSends) {
        a.sendMessage(m, compress);
      }
      pendingSends.clear();
      if (halfClosed) {
        a.halfClose();
      }
      synchronized (delivery) {
        readyPending = true;
      }
      scheduleDelivery();
    }
  }

  /** Hears one attempt; events of an attempt that is no longer the call's are dropped. */
  private final class AttemptListener implements TcpConnection.Listener {
    volatile TcpConnection.Call call;

    @Override
    public void onMessage(byte[] message) {
      sync.execute(() -> {
        if (attempt != call || closed != null) {
          return;
        }
        RespT r;
        try {
          r = method.parseResponse(new ByteArrayInputStream(message));
        } catch (RuntimeException e) {
          call.abandon();
          closeWith(TcpCallException.local(Status.Code.INTERNAL, "invalid response message: " + e.getMessage(), e, false));
          return;
        }
        synchronized (delivery) {
          inbox.add(r);
        }
        scheduleDelivery();
      });
    }

    @Override
    public void onClose(TcpCallException error) {
      sync.execute(() -> {
        if (call == null || attempt != call) {
          return;
        }
        attempt = null;
        attemptRunning = false;
        if (error == null) {
          closeOk();
        } else {
          onAttemptFailed(error, false);
        }
      });
    }
  }

  /**
   * An attempt failed: retry it (at once if the server never processed it; after a backoff if
   * only retryIdempotent allows it) or end the call.
   */
  private void onAttemptFailed(TcpCallException e, boolean startFailed) {
    if (closed != null) {
      return;
    }
    boolean retryable = e.getStatus().getCode() == Status.Code.UNAVAILABLE
        && attempts < channel.maxAttempts
        && !channel.isShutdown()
        && (deadline == null || !deadline.isExpired());
    boolean notProcessed = e.isSafeToRetry() && (unary || startFailed);
    if (retryable && notProcessed) {
      maybeSend();
      return;
    }
    if (retryable && unary && channel.retryIdempotent) {
      Duration d = channel.retryBackoff.delay(idempotentRetries++, ThreadLocalRandom.current().nextDouble());
      if (deadline == null || deadline.timeRemaining(TimeUnit.NANOSECONDS) > d.toNanos()) {
        attemptRunning = true; // waiting: nothing else starts one
        channel.scheduler.schedule(() -> sync.execute(() -> {
          attemptRunning = false;
          maybeSend();
        }), d.toNanos(), TimeUnit.NANOSECONDS);
        return;
      }
    }
    closeWith(e);
  }

  private void onDeadline() {
    if (closed != null) {
      return;
    }
    if (attempt != null) {
      attempt.abandon();
    }
    closeWith(TcpCallException.local(Status.Code.DEADLINE_EXCEEDED, "deadline exceeded", null, false));
  }

  private void closeOk() {
    closed = CLOSED_OK;
    finish(Status.OK, new Metadata(), false);
  }

  /** Ends the call with e's status and trailers (google.rpc.Status details included). */
  private void closeWith(TcpCallException e) {
    if (closed != null) {
      return;
    }
    closed = e;
    Metadata trailers = e.getTrailers() == null ? new Metadata() : e.getTrailers();
    // The server's own STATUS comes after the messages it sent; a local end drops what is undelivered.
    finish(e.getStatus(), trailers, e.isLocal());
  }

  private void finish(Status status, Metadata trailers, boolean dropMessages) {
    done = true;
    if (deadlineTimer != null) {
      deadlineTimer.cancel(false);
    }
    if (contextListener != null) {
      context.removeListener(contextListener);
    }
    if (withdrawPick != null) {
      withdrawPick.run();
      withdrawPick = null;
    }
    pendingSends.clear();
    synchronized (delivery) {
      closeStatus = status;
      closeTrailers = trailers;
      closeDropsMessages = dropMessages;
    }
    scheduleDelivery(); // before start, the listener is not there yet: onStart schedules it again
    if (started) {
      channel.callEnded(this); // after the delivery is queued: the channel may terminate now
    }
  }

  // ---------------------------------------------------------------- delivery (callbacks executor)

  private void scheduleDelivery() {
    callbacks.execute(() -> context.run(this::deliver));
  }

  private void deliver() {
    while (true) {
      Listener<RespT> l;
      RespT msg = null;
      boolean ready = false;
      boolean close = false;
      Status st = null;
      Metadata tr = null;
      synchronized (delivery) {
        l = listener;
        if (l == null || closeDelivered) {
          return;
        }
        boolean closing = closeStatus != null;
        if (closing && closeDropsMessages) {
          inbox.clear();
          readyPending = false;
        }
        if (readyPending) {
          readyPending = false;
          ready = true;
        } else if (!inbox.isEmpty() && demand > 0) {
          msg = inbox.poll();
          demand--;
        } else if (closing && inbox.isEmpty()) {
          closeDelivered = true;
          close = true;
          st = closeStatus;
          tr = closeTrailers;
        } else {
          return;
        }
      }
      try {
        if (ready) {
          l.onReady();
        } else if (msg != null) {
          if (!headersDelivered) {
            headersDelivered = true;
            l.onHeaders(new Metadata());
          }
          l.onMessage(msg);
        } else if (close) {
          l.onClose(st, tr);
          return;
        }
      } catch (RuntimeException e) {
        // As grpc-java does: a listener that throws cancels its call.
        log.log(Level.WARNING, "a call listener threw; cancelling the call", e);
        cancel("the call's listener threw", e);
      }
    }
  }
}
