package dev.calcrpc.client.tcp;

import io.grpc.Deadline;
import io.grpc.Metadata;
import java.util.concurrent.TimeUnit;

/**
 * Per-call options of the raw TCP client: deadline, metadata, and whether messages at or above the
 * server's COMPRESS_THRESHOLD are snappy-compressed. Immutable; the with* methods return copies.
 */
public final class TcpCallOptions {
  public static final TcpCallOptions DEFAULT = new TcpCallOptions(null, null, true);

  private final Deadline deadline;
  private final Metadata metadata;
  private final boolean compression;

  private TcpCallOptions(Deadline deadline, Metadata metadata, boolean compression) {
    this.deadline = deadline;
    this.metadata = metadata;
    this.compression = compression;
  }

  /** The call must end by this deadline; its remaining time is sent as the DEADLINE budget. */
  public TcpCallOptions withDeadline(Deadline d) {
    return new TcpCallOptions(d, metadata, compression);
  }

  public TcpCallOptions withDeadlineAfter(long duration, TimeUnit unit) {
    return withDeadline(Deadline.after(duration, unit));
  }

  /** Metadata sent with the call (a copy is taken); handlers see it as gRPC metadata. */
  public TcpCallOptions withMetadata(Metadata md) {
    Metadata copy = new Metadata();
    if (md != null) {
      copy.merge(md);
    }
    return new TcpCallOptions(deadline, copy, compression);
  }

  /** Whether to compress messages at or above the server's threshold (default true). */
  public TcpCallOptions withCompression(boolean on) {
    return new TcpCallOptions(deadline, metadata, on);
  }

  public Deadline deadline() {
    return deadline;
  }

  public Metadata metadata() {
    return metadata;
  }

  public boolean compression() {
    return compression;
  }
}
