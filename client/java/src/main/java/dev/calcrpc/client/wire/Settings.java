package dev.calcrpc.client.wire;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The server's SETTINGS (PROTOCOL.md section 4). Missing entries keep their defaults; unknown ids
 * are ignored.
 */
public record Settings(
    long maxFrameSize, long maxMessageSize, long compressThreshold, long maxConcurrentCalls, long idleTimeoutMillis) {

  public static final int MAX_FRAME_SIZE = 1;
  public static final int MAX_MESSAGE_SIZE = 2;
  public static final int COMPRESS_THRESHOLD = 3;
  public static final int MAX_CONCURRENT_CALLS = 4;
  public static final int IDLE_TIMEOUT_MILLIS = 5;

  public static final Settings DEFAULTS =
      new Settings(Wire.DEFAULT_MAX_FRAME_SIZE, Wire.DEFAULT_MAX_MESSAGE_SIZE, Wire.DEFAULT_COMPRESS_THRESHOLD, 1024, 300_000);

  /** Parses a SETTINGS payload: 6-byte entries of u16 id and u32 value. */
  public static Settings parse(byte[] p) throws WireException {
    if (p.length % 6 != 0) {
      throw new WireException(WireException.Error.BAD_PAYLOAD, "settings payload of " + p.length + " bytes is not 6-byte entries");
    }
    long[] v = {DEFAULTS.maxFrameSize, DEFAULTS.maxMessageSize, DEFAULTS.compressThreshold,
        DEFAULTS.maxConcurrentCalls, DEFAULTS.idleTimeoutMillis};
    for (int i = 0; i < p.length; i += 6) {
      int id = ((p[i] & 0xFF) << 8) | (p[i + 1] & 0xFF);
      if (id >= 1 && id <= 5) {
        v[id - 1] = Wire.u32(p, i + 2);
      }
    }
    return new Settings(v[0], v[1], v[2], v[3], v[4]);
  }

  /** Encodes all five entries. */
  public byte[] encode() {
    long[] v = {maxFrameSize, maxMessageSize, compressThreshold, maxConcurrentCalls, idleTimeoutMillis};
    byte[] p = new byte[30];
    for (int i = 0; i < 5; i++) {
      p[6 * i] = 0;
      p[6 * i + 1] = (byte) (i + 1);
      Wire.putU32(p, 6 * i + 2, v[i]);
    }
    return p;
  }

  /** The settings by their PROTOCOL.md names. */
  public Map<String, Long> byName() {
    Map<String, Long> m = new LinkedHashMap<>();
    m.put("MAX_FRAME_SIZE", maxFrameSize);
    m.put("MAX_MESSAGE_SIZE", maxMessageSize);
    m.put("COMPRESS_THRESHOLD", compressThreshold);
    m.put("MAX_CONCURRENT_CALLS", maxConcurrentCalls);
    m.put("IDLE_TIMEOUT_MILLIS", idleTimeoutMillis);
    return m;
  }
}
