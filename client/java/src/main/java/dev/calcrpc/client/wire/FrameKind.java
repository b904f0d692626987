package dev.calcrpc.client.wire;

/** The frame kinds of protocol v1 (PROTOCOL.md section 2). */
public enum FrameKind {
  SETTINGS(0x01),
  REQUEST(0x02),
  MESSAGE(0x03),
  HALF_CLOSE(0x04),
  RESPONSE(0x05),
  STATUS(0x06),
  CANCEL(0x07),
  PING(0x08),
  PONG(0x09),
  GOAWAY(0x0A);

  private static final FrameKind[] BY_CODE = new FrameKind[256];

  static {
    for (FrameKind k : values()) {
      BY_CODE[k.code] = k;
    }
  }

  private final int code;

  FrameKind(int code) {
    this.code = code;
  }

  /** The kind byte on the wire. */
  public int code() {
    return code;
  }

  /** The kind with this byte, or null for a kind protocol v1 does not define. */
  public static FrameKind of(int code) {
    return code >= 0 && code < 256 ? BY_CODE[code] : null;
  }
}
