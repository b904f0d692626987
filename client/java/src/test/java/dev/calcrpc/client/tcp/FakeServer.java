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
 * The server side of a TcpConnection under test, over in-memory pipes: the test reads the client's
 * frames and writes the server's, byte for byte. {@link #connector} hands fake servers to a
 * TcpChannel as its connections.
 */
final class FakeServer implements AutoCloseable {
  final Pipe toClient = new Pipe();
  final Pipe toServer = new Pipe();
  final RecordingInput recorded = new RecordingInput(toServer.in);
  final FrameReader frames = new FrameReader(recorded, Wire.DEFAULT_MAX_FRAME_SIZE);
  /** Completes once the preface has been read: the client's frames follow. */
  final CompletableFuture<Void> accepted = new CompletableFuture<>();
  /** Reads the preface (and sends nothing). */
  final Runnable accept = () -> {
    try {
      assertEquals(Wire.VERSION, Wire.readPreface(recorded));
      accepted.complete(null);
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  };

  static TcpConnection.Options options() {
    return TcpConnection.Options.defaults().connectTimeout(Duration.ofSeconds(5)).keepAlive(false);
  }

  /** The client's side: speaks the protocol over the pipes (blocks until the server answers). */
  TcpConnection clientSide() {
    return TcpConnection.over(toClient.in, toServer.out, this::close, options(), "fake");
  }

  /** Connects a TcpConnection; the server reads the preface and answers with the given first frame. */
  TcpConnection connect(byte[] firstFrame) throws Exception {
    CompletableFuture<TcpConnection> ch = CompletableFuture.supplyAsync(this::clientSide);
    assertEquals(Wire.VERSION, Wire.readPreface(recorded));
    accepted.complete(null);
    send(firstFrame);
    return ch.get(5, TimeUnit.SECONDS);
  }

  TcpConnection connect() throws Exception {
    return connect(settings());
  }

  static byte[] settings() {
    return Wire.frame(FrameKind.SETTINGS, 0, 0, Settings.DEFAULTS.encode());
  }

  /** The server's side of the handshake: reads the preface, sends SETTINGS. */
  void accept() {
    try {
      assertEquals(Wire.VERSION, Wire.readPreface(recorded));
      accepted.complete(null);
      send(settings());
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  /**
   * A TcpChannel connector that takes the next fake server from servers for every connection
   * attempt (UNAVAILABLE when none comes within a second) and runs its handshake.
   */
  static TcpChannel.Connector connector(java.util.concurrent.BlockingQueue<FakeServer> servers) {
    return (host, port, timeout) -> {
      FakeServer s;
      try {
        s = servers.poll(1, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        s = null;
      }
      if (s == null) {
        throw TcpCallException.local(io.grpc.Status.Code.UNAVAILABLE, "connect " + host + ":" + port + ": no fake server", null, true);
      }
      FakeServer server = s;
      CompletableFuture.runAsync(server::accept);
      return server.clientSide();
    };
  }

  void send(byte[] frame) throws IOException {
    toClient.out.write(frame);
  }

  void send(FrameKind kind, int flags, long id, byte[] payload) throws IOException {
    send(Wire.frame(kind, flags, id, payload));
  }

  /** The next frame from the client (null at EOF). */
  Frame next() throws IOException {
    awaitAccepted();
    return frames.read();
  }

  private void awaitAccepted() throws IOException {
    try {
      accepted.get(10, TimeUnit.SECONDS);
    } catch (Exception e) {
      throw new IOException("no client connected to this fake server", e);
    }
  }

  /** The raw bytes of the next frame from the client. */
  byte[] nextRaw() throws IOException {
    awaitAccepted();
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
