package dev.calcrpc.client.wire;

import java.util.Arrays;

/** A growable byte buffer for building payloads (an unsynchronized ByteArrayOutputStream). */
public final class ByteSink {
  private byte[] buf;
  private int len;

  public ByteSink(int capacity) {
    buf = new byte[Math.max(capacity, 16)];
  }

  public void write(int b) {
    ensure(1);
    buf[len++] = (byte) b;
  }

  public void write(byte[] b, int off, int n) {
    ensure(n);
    System.arraycopy(b, off, buf, len, n);
    len += n;
  }

  public void write(byte[] b) {
    write(b, 0, b.length);
  }

  public int size() {
    return len;
  }

  /** The backing array; bytes [0, size()) are valid. */
  public byte[] array() {
    return buf;
  }

  public byte[] toByteArray() {
    return Arrays.copyOf(buf, len);
  }

  private void ensure(int n) {
    if (len + n > buf.length) {
      buf = Arrays.copyOf(buf, Math.max(buf.length * 2, len + n));
    }
  }
}
