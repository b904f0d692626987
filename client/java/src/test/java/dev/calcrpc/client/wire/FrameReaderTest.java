package dev.calcrpc.client.wire;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.ByteArrayInputStream;
import java.io.InputStream;
import org.junit.jupiter.api.Test;

class FrameReaderTest {
  @Test
  void largeFrameBufferGrowsOnlyAsBytesArrive() throws Exception {
    // a length prefix claiming 4 MB, then only 100 bytes: TRUNCATED, without allocating 4 MB up front
    byte[] head = new byte[4 + 6 + 100];
    Wire.putU32(head, 0, 4_000_000);
    head[4] = 0x03;
    WireException e = assertThrows(WireException.class, () -> new FrameReader(new ByteArrayInputStream(head), 0).read());
    assertEquals(WireException.Error.TRUNCATED, e.error());
  }

  @Test
  void readsLargeFrameInPieces() throws Exception {
    byte[] payload = new byte[300_000];
    payload[299_999] = 7;
    byte[] f = Wire.frame(FrameKind.MESSAGE, 1, 9, payload);
    InputStream trickle = new ByteArrayInputStream(f) {
      @Override
      public synchronized int read(byte[] b, int off, int len) {
        return super.read(b, off, Math.min(len, 1000));
      }
    };
    FrameReader r = new FrameReader(trickle, 0);
    Frame got = r.read();
    assertEquals(FrameKind.MESSAGE, got.kind());
    assertEquals(9, got.id());
    assertEquals(300_000, got.payload().length);
    assertEquals(7, got.payload()[299_999]);
    assertNull(r.read());
  }

  @Test
  void uvarintRoundTrip() throws Exception {
    for (long v : new long[] {0, 1, 127, 128, 250_000, 65535, Long.MAX_VALUE, -1L}) {
      ByteSink s = new ByteSink(16);
      Wire.putUvarint(s, v);
      assertEquals(v, new Wire.Cursor(s.array(), 0, s.size()).uvarint());
    }
  }
}
