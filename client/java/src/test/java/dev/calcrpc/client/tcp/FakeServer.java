package dev.calcrpc.client.tcp;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.calcrpc.client.wire.Frame;
import dev.calcrpc.client.wire.FrameKind;
import dev.calcrpc.client.wire.FrameReader;
import dev.calcrpc.client.wire.Settings;
import dev.calcrpc.client.wire.Wire;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * The server side of a TcpChannel under test, over in-memory pipes: the test reads the client's
 * frames and writes the server's, byte for byte.
 */
final class FakeServer implements AutoCloseable {
  final Pipe toClient = new Pipe();
  final Pipe toServer = new Pipe();
  final RecordingInput recorded = new RecordingInput(toServer.in);
  final FrameReader frames = new FrameReader(recorded, Wire.DEFAULT_MAX_FRAME_SIZE);

  /** Connects a TcpChannel; the server reads the preface and answers with the given first frame. */
  TcpChannel connect(byte[] firstFrame) throws Exception {
    CompletableFuture<TcpChannel> ch = CompletableFuture.supplyAsync(() -> TcpChannel.over(
        toClient.in, toServer.out, () -> { toClient.close(); toServer.close(); },
        TcpChannel.Options.defaults().connectTimeout(Duration.ofSeconds(5)).keepAlive(false), "fake"));
    assertEquals(Wire.VERSION, Wire.readPreface(recorded));
    send(firstFrame);
    return ch.get(5, TimeUnit.SECONDS);
  }

  TcpChannel connect() throws Exception {
    return connect(Wire.frame(FrameKind.SETTINGS, 0, 0, Settings.DEFAULTS.encode()));
  }

  void send(byte[] frame) throws IOException {
    toClient.out.write(frame);
  }

  void send(FrameKind kind, int flags, long id, byte[] payload) throws IOException {
    send(Wire.frame(kind, flags, id, payload));
  }

  /** The next frame from the client (null at EOF). */
  Frame next() throws IOException {
    return frames.read();
  }

  /** The raw bytes of the next frame from the client. */
  byte[] nextRaw() throws IOException {
    recorded.forget();
    frames.read();
    return recorded.taken();
  }

  void expectRaw(String hex) throws IOException {
    assertArrayEquals(java.util.HexFormat.of().parseHex(hex.replace(" ", "")), nextRaw());
  }

  /** Closes the server's side: the client sees EOF. */
  void hangUp() {
    toClient.close();
  }

  @Override
  public void close() {
    toClient.close();
    toServer.close();
  }

  /** An input stream that remembers what was read since the last reset. */
  static final class RecordingInput extends InputStream {
    private final InputStream in;
    private final ByteArrayOutputStream taken = new ByteArrayOutputStream();

    RecordingInput(InputStream in) {
      this.in = in;
    }

    void forget() {
      taken.reset();
    }

    byte[] taken() {
      return taken.toByteArray();
    }

    @Override
    public int read() throws IOException {
      int b = in.read();
      if (b >= 0) {
        taken.write(b);
      }
      return b;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      int n = in.read(b, off, len);
      if (n > 0) {
        taken.write(b, off, n);
      }
      return n;
    }
  }
}
