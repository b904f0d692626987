package dev.calcrpc.client.wire;

import java.util.HexFormat;

/**
 * One frame: kind, flags, id (an unsigned 32-bit value held in a long) and payload.
 *
 * @param kind the kind, never null (a frame of an unknown kind is an error, not a Frame)
 * @param flags the flags byte
 * @param id the call id, 0 for connection frames
 * @param payload the bytes after the 10-byte frame prefix
 */
public record Frame(FrameKind kind, int flags, long id, byte[] payload) {

  public boolean has(int flag) {
    return (flags & flag) != 0;
  }

  /** The whole frame as it goes on the wire. */
  public byte[] encode() {
    return Wire.frame(kind, flags, id, payload);
  }

  @Override
  public String toString() {
    String p = payload.length <= 32 ? HexFormat.of().formatHex(payload) : payload.length + " bytes";
    return kind + " flags=" + flags + " id=" + id + " payload=" + p;
  }
}
