package dev.calcrpc.client.grpc;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.calcrpc.client.wire.WireException;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.HexFormat;
import org.junit.jupiter.api.Test;

class SnappyCodecTest {
  @Test
  void roundTripIsOneBlock() throws Exception {
    SnappyCodec codec = new SnappyCodec();
    byte[] msg = "1 + ".repeat(500).getBytes(StandardCharsets.UTF_8);
    ByteArrayOutputStream wire = new ByteArrayOutputStream();
    try (OutputStream os = codec.compress(wire)) {
      os.write(msg, 0, 7);
      os.write(msg, 7, msg.length - 7);
    }
    byte[] block = wire.toByteArray();
    // one block: the uvarint decoded length (2000 = d0 0f) leads, no framing-format stream identifier
    assertEquals((byte) 0xd0, block[0]);
    assertEquals(0x0f, block[1]);
    assertArrayEquals(msg, codec.decompress(new ByteArrayInputStream(block)).readAllBytes());
    assertEquals(1, codec.compressedCount());
    assertEquals(1, codec.decompressedCount());
  }

  @Test
  void decodesGoSnappyBlock() throws Exception {
    // the compressed EvaluateRequest of vector "evaluate_compressed", as Go's snappy.Encode made it
    byte[] block = HexFormat.of().parseHex("9003180a8d0331202b20fe0400fe0400fe0400fe0400fe0400fe04001504");
    byte[] msg = new SnappyCodec().decompress(new ByteArrayInputStream(block)).readAllBytes();
    assertEquals(400, msg.length);
  }

  @Test
  void rejectsBombBeforeDecoding() {
    byte[] bomb = {(byte) 0x80, (byte) 0x80, (byte) 0x80, (byte) 0x80, 0x04, 0x00, 0x61};
    WireException e = assertThrows(WireException.class, () -> new SnappyCodec().decompress(new ByteArrayInputStream(bomb)));
    assertEquals(WireException.Error.MESSAGE_TOO_LARGE, e.error());
  }
}
