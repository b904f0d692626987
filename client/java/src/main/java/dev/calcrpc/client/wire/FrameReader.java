package dev.calcrpc.client.wire;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.util.Arrays;

/**
 * Reads frames from a byte stream. The length prefix is checked against the max frame size before
 * anything is allocated, and a large frame's buffer grows only as its bytes actually arrive, so a
 * length prefix alone never makes the reader allocate. Not thread-safe: one reader thread owns it.
 */
public final class FrameReader {
  /** Frames up to this size get their buffer at once; larger ones grow it as bytes arrive. */
  static final int INITIAL_BUFFER = 64 << 10;

  private final InputStream in;
  private final int maxFrameSize;
  private final byte[] prefix = new byte[Wire.LENGTH_SIZE + Wire.HEADER_SIZE];

  /**
   * @param in the source; give it a buffered stream, frames are read with many small reads
   * @param maxFrameSize the largest length prefix accepted (Wire.DEFAULT_MAX_FRAME_SIZE if &lt;= 0)
   */
  public FrameReader(InputStream in, int maxFrameSize) {
    this.in = in;
    this.maxFrameSize = maxFrameSize > 0 ? maxFrameSize : Wire.DEFAULT_MAX_FRAME_SIZE;
  }

  /**
   * Reads the next frame.
   *
   * @return the frame, or null at a clean end of stream between frames
   * @throws WireException FRAME_TOO_LARGE / FRAME_TOO_SMALL (nothing of the payload read),
   *     UNKNOWN_KIND (the frame consumed), TRUNCATED (the stream ended inside a frame)
   * @throws IOException the source's own errors
   */
  public Frame read() throws IOException {
    int got = readUpTo(prefix, 0, Wire.LENGTH_SIZE);
    if (got == 0) {
      return null;
    }
    if (got < Wire.LENGTH_SIZE) {
      throw new WireException(WireException.Error.TRUNCATED, "stream ended " + got + " bytes into a length prefix");
    }
    long length = Wire.u32(prefix, 0);
    if (length > maxFrameSize) {
      throw new WireException(WireException.Error.FRAME_TOO_LARGE, length + " > " + maxFrameSize);
    }
    if (length < Wire.HEADER_SIZE) {
      throw new WireException(WireException.Error.FRAME_TOO_SMALL, Long.toString(length));
    }
    int n = (int) length;
    readFully(prefix, Wire.LENGTH_SIZE, Wire.HEADER_SIZE, n);
    int kindCode = prefix[4] & 0xFF;
    int flags = prefix[5] & 0xFF;
    long id = Wire.u32(prefix, 6);
    byte[] payload = readPayload(n - Wire.HEADER_SIZE, n);
    FrameKind kind = FrameKind.of(kindCode);
    if (kind == null) {
      throw new WireException(WireException.Error.UNKNOWN_KIND, String.format("kind 0x%02X", kindCode));
    }
    return new Frame(kind, flags, id, payload);
  }

  private byte[] readPayload(int size, int frameLength) throws IOException {
    if (size <= INITIAL_BUFFER) {
      byte[] b = new byte[size];
      readFully(b, 0, size, frameLength);
      return b;
    }
    byte[] b = new byte[INITIAL_BUFFER];
    int have = 0;
    while (have < size) {
      if (have == b.length) {
        b = Arrays.copyOf(b, (int) Math.min(size, 2L * b.length));
      }
      int m = in.read(b, have, b.length - have);
      if (m < 0) {
        throw truncated(Wire.HEADER_SIZE + have, frameLength);
      }
      have += m;
    }
    return b;
  }

  private void readFully(byte[] b, int off, int len, int frameLength) throws IOException {
    int got = readUpTo(b, off, len);
    if (got < len) {
      int into = (b == prefix ? off - Wire.LENGTH_SIZE : Wire.HEADER_SIZE) + got;
      throw truncated(into, frameLength);
    }
  }

  private static WireException truncated(int into, int frameLength) {
    return new WireException(
        WireException.Error.TRUNCATED, "stream ended " + into + " bytes into a " + frameLength + "-byte frame",
        new EOFException());
  }

  /** Reads until len bytes or end of stream; returns how many were read. */
  private int readUpTo(byte[] b, int off, int len) throws IOException {
    int got = 0;
    while (got < len) {
      int m = in.read(b, off + got, len - got);
      if (m < 0) {
        break;
      }
      got += m;
    }
    return got;
  }
}
