package dev.calcrpc.client.wire;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import org.xerial.snappy.Snappy;
import org.xerial.snappy.SnappyError;

/**
 * Encoding and decoding of calc's raw TCP protocol v1 (PROTOCOL.md), without sockets: the preface,
 * frames, varints, messages with snappy block compression, and the STATUS and GOAWAY payloads.
 */
public final class Wire {
  private Wire() {}

  /** The 4-byte magic, ASCII CALC. */
  public static final byte[] MAGIC = {'C', 'A', 'L', 'C'};
  /** The protocol version this library speaks. */
  public static final int VERSION = 1;
  /** The 5-byte client preface. */
  public static final byte[] PREFACE = {'C', 'A', 'L', 'C', VERSION};

  /** Bytes of the length prefix. */
  public static final int LENGTH_SIZE = 4;
  /** Bytes of kind, flags and id, counted by the length prefix. */
  public static final int HEADER_SIZE = 6;
  /** Bytes before a frame's payload. */
  public static final int FRAME_OVERHEAD = LENGTH_SIZE + HEADER_SIZE;

  public static final int DEFAULT_MAX_FRAME_SIZE = 4_210_688;
  public static final int DEFAULT_MAX_MESSAGE_SIZE = 4_194_304;
  public static final int DEFAULT_COMPRESS_THRESHOLD = 256;
  public static final int MAX_METHOD_NAME = 512;
  public static final int MAX_METADATA_BYTES = 8 << 10;
  public static final int MAX_METHOD_REFS = 256;
  public static final int MAX_PING_PAYLOAD = 64;

  /** Flag: the message is one snappy block. */
  public static final int FLAG_COMPRESSED = 0x01;
  /** Flag: the REQUEST header binds the method ref to a name. */
  public static final int FLAG_METHOD_NAME = 0x02;
  /** Flag: the REQUEST header carries a deadline budget. */
  public static final int FLAG_DEADLINE = 0x04;
  /** Flag: the REQUEST header carries metadata. */
  public static final int FLAG_METADATA = 0x08;

  // ---- preface ----

  /**
   * Reads the client preface: exactly 5 bytes, failing with BAD_MAGIC as soon as the first four are
   * not the magic. Returns the version byte, which the caller checks.
   */
  public static int readPreface(InputStream in) throws IOException {
    byte[] p = new byte[PREFACE.length];
    int got = in.readNBytes(p, 0, MAGIC.length);
    if (got < MAGIC.length) {
      throw new WireException(WireException.Error.TRUNCATED, "stream ended " + got + " bytes into the preface");
    }
    for (int i = 0; i < MAGIC.length; i++) {
      if (p[i] != MAGIC[i]) {
        throw new WireException(WireException.Error.BAD_MAGIC, "first bytes are not CALC");
      }
    }
    int v = in.read();
    if (v < 0) {
      throw new WireException(WireException.Error.TRUNCATED, "stream ended before the version byte");
    }
    return v;
  }

  // ---- frames ----

  /** Encodes one whole frame. */
  public static byte[] frame(FrameKind kind, int flags, long id, byte[] payload) {
    return frame(kind, flags, id, payload, 0, payload.length);
  }

  /** Encodes one whole frame whose payload is payload[off, off+len). */
  public static byte[] frame(FrameKind kind, int flags, long id, byte[] payload, int off, int len) {
    byte[] f = new byte[FRAME_OVERHEAD + len];
    putU32(f, 0, HEADER_SIZE + len);
    f[4] = (byte) kind.code();
    f[5] = (byte) flags;
    putU32(f, 6, id);
    System.arraycopy(payload, off, f, FRAME_OVERHEAD, len);
    return f;
  }

  /** Reads a big-endian u32 at off. */
  public static long u32(byte[] b, int off) {
    return ((b[off] & 0xFFL) << 24) | ((b[off + 1] & 0xFFL) << 16) | ((b[off + 2] & 0xFFL) << 8) | (b[off + 3] & 0xFFL);
  }

  /** Writes v as a big-endian u32 at off. */
  public static void putU32(byte[] b, int off, long v) {
    b[off] = (byte) (v >>> 24);
    b[off + 1] = (byte) (v >>> 16);
    b[off + 2] = (byte) (v >>> 8);
    b[off + 3] = (byte) v;
  }

  // ---- varints and strings ----

  /** Appends v (treated as unsigned) as a uvarint. */
  public static void putUvarint(ByteSink out, long v) {
    while ((v & ~0x7FL) != 0) {
      out.write((int) ((v & 0x7F) | 0x80));
      v >>>= 7;
    }
    out.write((int) v);
  }

  /** Appends a uvarint byte count and the bytes. */
  public static void putString(ByteSink out, byte[] s) {
    putUvarint(out, s.length);
    out.write(s, 0, s.length);
  }

  /** A cursor over a byte range, for parsing payloads. */
  public static final class Cursor {
    private final byte[] b;
    private int pos;
    private final int end;

    public Cursor(byte[] b, int off, int len) {
      this.b = b;
      this.pos = off;
      this.end = off + len;
    }

    public int position() {
      return pos;
    }

    public int remaining() {
      return end - pos;
    }

    /**
     * Reads a uvarint of at most 10 bytes that fits in 64 bits.
     *
     * @throws IllegalArgumentException on a truncated or overlong varint
     */
    public long uvarint() {
      long v = 0;
      for (int shift = 0; shift < 64; shift += 7) {
        if (pos >= end) {
          throw new IllegalArgumentException("truncated varint");
        }
        int c = b[pos++] & 0xFF;
        if (shift == 63 && c > 1) {
          throw new IllegalArgumentException("varint overflows 64 bits");
        }
        v |= (long) (c & 0x7F) << shift;
        if (c < 0x80) {
          return v;
        }
      }
      throw new IllegalArgumentException("varint longer than 10 bytes");
    }

    /** Reads a uvarint count and that many bytes, refusing counts above max. */
    public byte[] string(int max) {
      long n = uvarint();
      if (n > max) {
        throw new IllegalArgumentException("string of " + Long.toUnsignedString(n) + " bytes exceeds " + max);
      }
      if (n > remaining()) {
        throw new IllegalArgumentException("string of " + n + " bytes runs past the payload");
      }
      byte[] s = new byte[(int) n];
      System.arraycopy(b, pos, s, 0, s.length);
      pos += s.length;
      return s;
    }
  }

  // ---- messages ----

  /** A message ready for a frame: its bytes and whether they are one snappy block. */
  public record EncodedMessage(byte[] bytes, boolean compressed) {
    public int flags() {
      return compressed ? FLAG_COMPRESSED : 0;
    }
  }

  /**
   * Prepares a message for sending: compressed as one snappy block when it is at least threshold
   * bytes and the block is smaller, else as is. A threshold &lt;= 0 disables compression.
   */
  public static EncodedMessage encodeMessage(byte[] msg, int threshold) {
    if (threshold > 0 && msg.length >= threshold) {
      try {
        byte[] c = Snappy.compress(msg);
        if (c.length < msg.length) {
          return new EncodedMessage(c, true);
        }
      } catch (IOException e) {
        // fall through: send it uncompressed
      }
    }
    return new EncodedMessage(msg, false);
  }

  /**
   * Decodes a frame's message bytes b[off, off+len). A compressed message's decoded length is read
   * and checked against maxMessageSize before anything is decoded or allocated.
   *
   * @throws WireException MESSAGE_TOO_LARGE or CORRUPT_MESSAGE
   */
  public static byte[] decodeMessage(byte[] b, int off, int len, boolean compressed, int maxMessageSize)
      throws WireException {
    if (!compressed) {
      if (len > maxMessageSize) {
        throw new WireException(WireException.Error.MESSAGE_TOO_LARGE, len + " > " + maxMessageSize);
      }
      byte[] m = new byte[len];
      System.arraycopy(b, off, m, 0, len);
      return m;
    }
    long n = snappyDecodedLength(b, off, len);
    if (n > maxMessageSize) {
      throw new WireException(WireException.Error.MESSAGE_TOO_LARGE, "snappy decoded length " + n + " > " + maxMessageSize);
    }
    byte[] out = new byte[(int) n];
    try {
      int got = Snappy.uncompress(b, off, len, out, 0);
      if (got != n) {
        throw new WireException(WireException.Error.CORRUPT_MESSAGE, "snappy block decoded to " + got + " bytes, header says " + n);
      }
    } catch (IOException | SnappyError e) {
      throw new WireException(WireException.Error.CORRUPT_MESSAGE, "snappy: " + e.getMessage(), e);
    }
    return out;
  }

  /**
   * The decoded length a snappy block claims: its leading uvarint, at most 32 bits, as snappy's
   * DecodedLen reads it.
   */
  public static long snappyDecodedLength(byte[] b, int off, int len) throws WireException {
    long v = 0;
    for (int i = 0; i < 5; i++) {
      if (i >= len) {
        throw new WireException(WireException.Error.CORRUPT_MESSAGE, "snappy block: truncated length");
      }
      int c = b[off + i] & 0xFF;
      if (i == 4 && c >= 0x10) {
        throw new WireException(WireException.Error.CORRUPT_MESSAGE, "snappy block: length overflows 32 bits");
      }
      v |= (long) (c & 0x7F) << (7 * i);
      if (c < 0x80) {
        return v;
      }
    }
    throw new WireException(WireException.Error.CORRUPT_MESSAGE, "snappy block: length overflows 32 bits");
  }

  // ---- status and goaway ----

  /** Parses a STATUS payload; an empty payload is OK. */
  public static com.google.rpc.Status parseStatus(byte[] b, int off, int len) throws WireException {
    try {
      return com.google.rpc.Status.parseFrom(com.google.protobuf.CodedInputStream.newInstance(b, off, len));
    } catch (IOException e) {
      throw new WireException(WireException.Error.BAD_PAYLOAD, "status: " + e.getMessage(), e);
    }
  }

  /** A parsed GOAWAY payload. */
  public record GoAway(long lastId, com.google.rpc.Status status) {}

  /** Parses a GOAWAY payload: u32 last accepted id, then a google.rpc.Status. */
  public static GoAway parseGoAway(byte[] p) throws WireException {
    if (p.length < 4) {
      throw new WireException(WireException.Error.BAD_PAYLOAD, "goaway payload of " + p.length + " bytes");
    }
    return new GoAway(u32(p, 0), parseStatus(p, 4, p.length - 4));
  }

  /** Encodes a GOAWAY payload. */
  public static byte[] goAwayPayload(long lastId, com.google.rpc.Status status) {
    byte[] s = status.toByteArray();
    byte[] p = new byte[4 + s.length];
    putU32(p, 0, lastId);
    System.arraycopy(s, 0, p, 4, s.length);
    return p;
  }

  static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }
}
