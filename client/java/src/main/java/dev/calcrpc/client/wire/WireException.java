package dev.calcrpc.client.wire;

import java.io.IOException;

/** A violation of the wire format, named as testdata/wire/vectors.json names them. */
public final class WireException extends IOException {
  private static final long serialVersionUID = 1L;

  /** What went wrong. */
  public enum Error {
    /** The first four bytes of a connection are not the magic CALC. */
    BAD_MAGIC,
    /** A length prefix above the max frame size. */
    FRAME_TOO_LARGE,
    /** A length prefix below the 6 header bytes. */
    FRAME_TOO_SMALL,
    /** A kind byte protocol v1 does not define (the frame was consumed). */
    UNKNOWN_KIND,
    /** The stream ended inside a frame (or inside the preface). */
    TRUNCATED,
    /** A message (or a snappy block's decoded length) above the max message size. */
    MESSAGE_TOO_LARGE,
    /** A snappy block that does not decode. */
    CORRUPT_MESSAGE,
    /** A malformed REQUEST header. */
    BAD_HEADER,
    /** A malformed connection frame payload (SETTINGS, GOAWAY, STATUS). */
    BAD_PAYLOAD
  }

  private final Error error;

  public WireException(Error error, String detail) {
    super(error + ": " + detail);
    this.error = error;
  }

  public WireException(Error error, String detail, Throwable cause) {
    super(error + ": " + detail, cause);
    this.error = error;
  }

  public Error error() {
    return error;
  }
}
