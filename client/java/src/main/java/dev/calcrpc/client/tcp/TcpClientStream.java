package dev.calcrpc.client.tcp;

import io.grpc.stub.StreamObserver;

/**
 * The sending side of a raw TCP streaming call. It is a {@link StreamObserver} of requests, like
 * the one a gRPC async stub returns: onNext sends a MESSAGE, onCompleted sends HALF_CLOSE and
 * onError cancels. Sending never blocks: frames are queued for the connection's writer. Not safe
 * for concurrent senders (as gRPC's).
 */
public final class TcpClientStream<Req, Resp> implements StreamObserver<Req> {
  private final TcpChannel channel;
  private final TcpChannel.StreamCall<Req, Resp> call;
  private volatile boolean halfClosed;
  private volatile boolean done;
  private boolean compression = true;

  TcpClientStream(TcpChannel channel, TcpChannel.StreamCall<Req, Resp> call) {
    this.channel = channel;
    this.call = call;
  }

  TcpChannel channel() {
    return channel;
  }

  void markDone() {
    done = true;
  }

  /** Whether messages at or above the server's threshold are compressed (default true). */
  public TcpClientStream<Req, Resp> setCompression(boolean on) {
    compression = on;
    return this;
  }

  /**
   * Sends one request message. Dropped silently if the call already ended (its observer has been
   * or is being told why).
   *
   * @throws IllegalStateException after halfClose
   */
  public void send(Req request) {
    if (halfClosed) {
      throw new IllegalStateException("send after halfClose");
    }
    if (done) {
      return;
    }
    channel.sendMessage(call, TcpChannel.marshal(call.method.getRequestMarshaller(), request), compression);
  }

  /** Tells the server no more messages follow (HALF_CLOSE). Responses keep coming. */
  public void halfClose() {
    if (!halfClosed) {
      halfClosed = true;
      if (!done) {
        channel.sendHalfClose(call);
      }
    }
  }

  /**
   * Cancels the call (CANCEL). The server still answers with the call's one final status, normally
   * CANCELLED, which ends the call as usual through the response observer.
   */
  public void cancel() {
    if (!done) {
      channel.cancel(call);
    }
  }

  /** Whether the call has ended. */
  public boolean isDone() {
    return done;
  }

  /** The call id on the connection. */
  public long callId() {
    return call.id;
  }

  @Override
  public void onNext(Req value) {
    send(value);
  }

  @Override
  public void onError(Throwable t) {
    cancel();
  }

  @Override
  public void onCompleted() {
    halfClose();
  }
}
