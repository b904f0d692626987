package dev.calcrpc.client.wire;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The header at the start of a REQUEST payload (PROTOCOL.md section 3).
 *
 * @param methodRef the method ref, 1 to 65535
 * @param methodName the full method name bound to the ref by this frame, or null
 * @param timeoutMicros the deadline budget in microseconds, or null for none
 * @param metadata key/value pairs in order (values of "-bin" keys are binary), empty for none
 */
public record RequestHeader(int methodRef, String methodName, Long timeoutMicros, List<Entry> metadata) {

  /** One metadata pair; the value is raw bytes (text for plain keys, binary for "-bin" keys). */
  public record Entry(String key, byte[] value) {
    public String valueString() {
      return new String(value, StandardCharsets.UTF_8);
    }
  }

  public RequestHeader {
    if (methodRef < 1 || methodRef > 65535) {
      throw new IllegalArgumentException("method ref " + methodRef + " not in 1..65535");
    }
    metadata = metadata == null ? List.of() : List.copyOf(metadata);
  }

  /** The flags this header needs (METHOD_NAME, DEADLINE, METADATA). */
  public int flags() {
    int f = 0;
    if (methodName != null) {
      f |= Wire.FLAG_METHOD_NAME;
    }
    if (timeoutMicros != null) {
      f |= Wire.FLAG_DEADLINE;
    }
    if (!metadata.isEmpty()) {
      f |= Wire.FLAG_METADATA;
    }
    return f;
  }

  /** Appends the header to out. */
  public void encode(ByteSink out) {
    Wire.putUvarint(out, methodRef);
    if (methodName != null) {
      byte[] n = Wire.utf8(methodName);
      if (n.length > Wire.MAX_METHOD_NAME) {
        throw new IllegalArgumentException("method name longer than " + Wire.MAX_METHOD_NAME + " bytes");
      }
      Wire.putString(out, n);
    }
    if (timeoutMicros != null) {
      Wire.putUvarint(out, Math.max(0, timeoutMicros));
    }
    if (!metadata.isEmpty()) {
      int start = out.size();
      Wire.putUvarint(out, metadata.size());
      for (Entry e : metadata) {
        Wire.putString(out, Wire.utf8(e.key()));
        Wire.putString(out, e.value());
      }
      if (out.size() - start > Wire.MAX_METADATA_BYTES) {
        throw new IllegalArgumentException("metadata over " + Wire.MAX_METADATA_BYTES + " bytes");
      }
    }
  }

  /** A parsed header and where the message starts in the payload. */
  public record Parsed(RequestHeader header, int messageOffset) {}

  /**
   * Parses the header of a REQUEST payload with the given frame flags.
   *
   * @throws WireException BAD_HEADER
   */
  public static Parsed parse(int flags, byte[] payload) throws WireException {
    Wire.Cursor c = new Wire.Cursor(payload, 0, payload.length);
    try {
      long ref = c.uvarint();
      if (ref < 1 || ref > 65535) {
        throw new IllegalArgumentException("method ref " + Long.toUnsignedString(ref) + " not in 1..65535");
      }
      String name = null;
      if ((flags & Wire.FLAG_METHOD_NAME) != 0) {
        name = new String(c.string(Wire.MAX_METHOD_NAME), StandardCharsets.UTF_8);
      }
      Long timeout = null;
      if ((flags & Wire.FLAG_DEADLINE) != 0) {
        long t = c.uvarint();
        if (t < 0) {
          throw new IllegalArgumentException("deadline budget overflows");
        }
        timeout = t;
      }
      List<Entry> md = new ArrayList<>();
      if ((flags & Wire.FLAG_METADATA) != 0) {
        int start = c.position();
        long n = c.uvarint();
        if (n > Wire.MAX_METADATA_BYTES / 2) {
          throw new IllegalArgumentException(n + " metadata pairs");
        }
        for (long i = 0; i < n; i++) {
          String k = new String(c.string(Wire.MAX_METADATA_BYTES), StandardCharsets.UTF_8);
          byte[] v = c.string(Wire.MAX_METADATA_BYTES);
          md.add(new Entry(k, v));
        }
        if (c.position() - start > Wire.MAX_METADATA_BYTES) {
          throw new IllegalArgumentException("metadata over " + Wire.MAX_METADATA_BYTES + " bytes");
        }
      }
      return new Parsed(new RequestHeader((int) ref, name, timeout, md), c.position());
    } catch (IllegalArgumentException e) {
      throw new WireException(WireException.Error.BAD_HEADER, e.getMessage(), e);
    }
  }
}
