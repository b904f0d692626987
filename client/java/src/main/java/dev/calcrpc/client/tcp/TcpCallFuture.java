package dev.calcrpc.client.tcp;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The pending result of a unary raw TCP call. It fails with a {@link TcpCallException}; cancelling
 * it sends CANCEL to the server. {@link #await()} blocks like a gRPC blocking stub.
 */
public final class TcpCallFuture<T> extends CompletableFuture<T> {
  private final TcpChannel channel;
  private final TcpChannel.Call call;

  TcpCallFuture(TcpChannel channel, TcpChannel.Call call) {
    this.channel = channel;
    this.call = call;
  }

  /** Cancels the call: the future fails with CancellationException and the server gets CANCEL. */
  @Override
  public boolean cancel(boolean mayInterruptIfRunning) {
    boolean cancelled = super.cancel(mayInterruptIfRunning);
    if (cancelled) {
      channel.abandon(call);
    }
    return cancelled;
  }

  /**
   * Waits for the response and returns it, or throws the call's StatusRuntimeException (a
   * TcpCallException; CANCELLED if the future was cancelled or the wait interrupted).
   */
  public T await() {
    return awaitResult(this::get, 0, null);
  }

  /** As {@link #await()}, giving up (and cancelling) after the timeout with DEADLINE_EXCEEDED. */
  public T await(long timeout, TimeUnit unit) {
    return awaitResult(() -> get(timeout, unit), timeout, unit);
  }

  /** One wait for the result: {@link #get()} or {@link #get(long, TimeUnit)}. */
  private interface Wait<T> {
    T get() throws InterruptedException, ExecutionException, TimeoutException;
  }

  private T awaitResult(Wait<T> wait, long timeout, TimeUnit unit) {
    try {
      return wait.get();
    } catch (TimeoutException e) {
      cancel(false);
      throw TcpCallException.local(Status.Code.DEADLINE_EXCEEDED, "no answer within " + timeout + " " + unit, e, false);
    } catch (ExecutionException e) {
      throw asStatus(e.getCause());
    } catch (CancellationException e) {
      throw TcpCallException.local(Status.Code.CANCELLED, "call cancelled", e, false);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      cancel(false);
      throw TcpCallException.local(Status.Code.CANCELLED, "interrupted", e, false);
    }
  }

  private static StatusRuntimeException asStatus(Throwable t) {
    if (t instanceof StatusRuntimeException s) {
      return s;
    }
    return TcpCallException.local(Status.Code.UNKNOWN, String.valueOf(t), t, false);
  }
}
