package dev.calcrpc.client.grpc;

import dev.calcrpc.client.wire.Wire;
import dev.calcrpc.client.wire.WireException;
import io.grpc.Codec;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.concurrent.atomic.AtomicLong;
import org.xerial.snappy.Snappy;
import org.xerial.snappy.SnappyError;

/**
 * The "snappy" grpc-encoding calcd registers (internal/grpcsnappy): each compressed gRPC message
 * is ONE snappy block in the raw block format (uvarint decoded length, then the compressed
 * elements), not the snappy framing format. Decompression checks the block's decoded length
 * against a maximum before decoding anything.
 *
 * <p>Register it on a channel with {@link CalcGrpc#snappyChannel} or by hand:
 * {@code .compressorRegistry(reg).decompressorRegistry(DecompressorRegistry.getDefaultInstance().with(codec, true))},
 * then call with {@code stub.withCompression("snappy")}.
 */
public final class SnappyCodec implements Codec {
  /** The grpc-encoding name. */
  public static final String NAME = "snappy";

  private final int maxDecodedLength;
  private final AtomicLong compressed = new AtomicLong();
  private final AtomicLong decompressed = new AtomicLong();

  public SnappyCodec() {
    this(Wire.DEFAULT_MAX_MESSAGE_SIZE);
  }

  /** @param maxDecodedLength the largest decoded message accepted (calcd's default is 4 MiB) */
  public SnappyCodec(int maxDecodedLength) {
    this.maxDecodedLength = maxDecodedLength;
  }

  @Override
  public String getMessageEncoding() {
    return NAME;
  }

  /** Messages this codec has compressed so far. */
  public long compressedCount() {
    return compressed.get();
  }

  /** Messages this codec has decompressed so far. */
  public long decompressedCount() {
    return decompressed.get();
  }

  /** Buffers the message and writes it to os as one snappy block when closed. */
  @Override
  public OutputStream compress(OutputStream os) {
    return new ByteArrayOutputStream(256) {
      private boolean closed;

      @Override
      public void close() throws IOException {
        if (closed) {
          return;
        }
        closed = true;
        byte[] block = Snappy.compress(toByteArray());
        os.write(block);
        os.close();
        compressed.incrementAndGet();
      }
    };
  }

  /** Reads the whole block and returns its decoded contents. */
  @Override
  public InputStream decompress(InputStream is) throws IOException {
    byte[] block = is.readAllBytes();
    long n = Wire.snappyDecodedLength(block, 0, block.length);
    if (n > maxDecodedLength) {
      throw new WireException(WireException.Error.MESSAGE_TOO_LARGE, "snappy decoded length " + n + " exceeds " + maxDecodedLength);
    }
    byte[] out = new byte[(int) n];
    try {
      int got = Snappy.uncompress(block, 0, block.length, out, 0);
      if (got != n) {
        throw new WireException(WireException.Error.CORRUPT_MESSAGE, "snappy block decoded to " + got + " bytes, header says " + n);
      }
    } catch (SnappyError e) {
      throw new WireException(WireException.Error.CORRUPT_MESSAGE, "snappy: " + e.getMessage(), e);
    }
    decompressed.incrementAndGet();
    return new ByteArrayInputStream(out);
  }
}
