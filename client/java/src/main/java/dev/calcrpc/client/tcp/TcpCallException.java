package dev.calcrpc.client.tcp;

import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.ProtoUtils;

/**
 * A raw TCP call's failure, as the io.grpc status exception gRPC stubs throw, so callers handle
 * both transports alike: {@code Status.fromThrowable(e).getCode()}, and
 * {@code io.grpc.protobuf.StatusProto.fromThrowable(e)} gives the google.rpc.Status with its
 * details (the trailers carry it as grpc-status-details-bin, as on gRPC).
 */
public final class TcpCallException extends StatusRuntimeException {
  private static final long serialVersionUID = 1L;

  /** The trailer gRPC uses for the google.rpc.Status; StatusProto reads it. */
  public static final Metadata.Key<com.google.rpc.Status> STATUS_DETAILS_KEY =
      Metadata.Key.of("grpc-status-details-bin", ProtoUtils.metadataMarshaller(com.google.rpc.Status.getDefaultInstance()));

  private final transient com.google.rpc.Status statusProto;
  private final boolean safeToRetry;
  private final boolean local;

  private TcpCallException(Status status, Metadata trailers, com.google.rpc.Status statusProto, boolean safeToRetry, boolean local) {
    super(status, trailers);
    this.statusProto = statusProto;
    this.safeToRetry = safeToRetry;
    this.local = local;
  }

  /** The failure the server sent in a STATUS frame (or the GOAWAY that refused a connection). */
  public static TcpCallException fromStatusProto(com.google.rpc.Status sp, boolean safeToRetry) {
    Status status = Status.fromCodeValue(sp.getCode());
    if (status.getCode().value() != sp.getCode()) { // a code gRPC does not know: UNKNOWN, as grpc-java does
      sp = sp.toBuilder().setCode(status.getCode().value())
          .setMessage("unknown status code " + sp.getCode() + ": " + sp.getMessage()).build();
    }
    status = status.withDescription(sp.getMessage());
    Metadata trailers = new Metadata();
    trailers.put(STATUS_DETAILS_KEY, sp);
    return new TcpCallException(status, trailers, sp, safeToRetry, false);
  }

  /** A failure decided on this side of the connection. */
  public static TcpCallException local(Status.Code code, String message, Throwable cause, boolean safeToRetry) {
    com.google.rpc.Status sp = com.google.rpc.Status.newBuilder().setCode(code.value()).setMessage(message).build();
    Metadata trailers = new Metadata();
    trailers.put(STATUS_DETAILS_KEY, sp);
    return new TcpCallException(code.toStatus().withDescription(message).withCause(cause), trailers, sp, safeToRetry, true);
  }

  /** The call's final status as google.rpc.Status, details included. */
  public com.google.rpc.Status statusProto() {
    return statusProto;
  }

  /**
   * True when the server is known not to have processed the call: it was above a GOAWAY's last
   * accepted id, or it was never sent. Such a call may be retried on a new connection.
   */
  public boolean isSafeToRetry() {
    return safeToRetry;
  }

  /**
   * True when this side decided the failure (a lost connection, a local deadline, a refused
   * start), false when the server sent it (a STATUS frame, or the GOAWAY refusing a connection).
   */
  public boolean isLocal() {
    return local;
  }
}
