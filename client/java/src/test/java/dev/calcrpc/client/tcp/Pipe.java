package dev.calcrpc.client.tcp;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.util.Arrays;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/** A one-way in-memory byte pipe for tests (no sockets, no ports); close gives the reader EOF. */
final class Pipe {
  private static final byte[] EOF = new byte[0];
  private final LinkedBlockingQueue<byte[]> chunks = new LinkedBlockingQueue<>();
  private volatile boolean closed;

  final OutputStream out = new OutputStream() {
    @Override
    public void write(int b) throws IOException {
      write(new byte[] {(byte) b}, 0, 1);
    }

    @Override
    public void write(byte[] b, int off, int len) throws IOException {
      if (closed) {
        throw new IOException("pipe closed");
      }
      if (len > 0) {
        chunks.add(Arrays.copyOfRange(b, off, off + len));
      }
    }

    @Override
    public void close() {
      Pipe.this.close();
    }
  };

  final InputStream in = new InputStream() {
    private byte[] cur = new byte[0];
    private int pos;

    @Override
    public int read() throws IOException {
      byte[] one = new byte[1];
      int n = read(one, 0, 1);
      return n < 0 ? -1 : one[0] & 0xFF;
    }

    @Override
    public int read(byte[] b, int off, int len) throws IOException {
      if (len == 0) {
        return 0;
      }
      while (pos == cur.length) {
        if (cur == EOF) {
          return -1;
        }
        try {
          byte[] next = chunks.poll(30, TimeUnit.SECONDS);
          if (next == null) {
            throw new IOException("pipe read timed out");
          }
          if (next == EOF) {
            chunks.add(EOF);
          }
          cur = next;
          pos = 0;
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IOException(e);
        }
      }
      int n = Math.min(len, cur.length - pos);
      System.arraycopy(cur, pos, b, off, n);
      pos += n;
      return n;
    }

    @Override
    public void close() {
      Pipe.this.close();
    }
  };

  void close() {
    if (!closed) {
      closed = true;
      chunks.add(EOF);
    }
  }
}
