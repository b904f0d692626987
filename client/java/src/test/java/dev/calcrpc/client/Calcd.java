package dev.calcrpc.client;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A real calcd for the integration tests: built from this repository with {@code go build
 * ./server/cmd/calcd} (once per test run, into target/test-bin), started on loopback, its
 * addresses read from its log, stopped by its PID. Development certificates come from
 * {@code go run ./tools/devcerts}. Go must be on PATH: without it these tests fail, they do not skip.
 */
public final class Calcd implements AutoCloseable {
  /** The repository root (the tests run in client/java). */
  public static final Path ROOT = Path.of(System.getProperty("user.dir")).resolve("../..").toAbsolutePath().normalize();

  private static final Pattern LISTENING =
      Pattern.compile("\"msg\":\"listening\",\"transport\":\"(tcp|grpc)\",\"addr\":\"([^\"]+)\"");
  private static Path binary;
  private static Path certs;

  private final Process process;
  private final Path log;
  private final String tcp;
  private final String grpc;

  private Calcd(Process process, Path log, String tcp, String grpc) {
    this.process = process;
    this.log = log;
    this.tcp = tcp;
    this.grpc = grpc;
  }

  /** calcd's binary, built on first use. */
  public static synchronized Path binary() throws IOException, InterruptedException {
    if (binary == null) {
      Path out = ROOT.resolve("client/java/target/test-bin/calcd");
      run(List.of("go", "build", "-o", out.toString(), "./server/cmd/calcd"));
      binary = out;
    }
    return binary;
  }

  /** A directory with the development CA, server and client certificates (made on first use). */
  public static synchronized Path certs() throws IOException, InterruptedException {
    if (certs == null) {
      certs = newCerts();
    }
    return certs;
  }

  /** A fresh set of development certificates, of a CA of their own. */
  public static Path newCerts() throws IOException, InterruptedException {
    Path dir = Files.createTempDirectory(Files.createDirectories(ROOT.resolve("client/java/target")), "certs");
    Files.delete(dir); // devcerts makes it and never overwrites
    run(List.of("go", "run", "./tools/devcerts", "-out", dir.toString()));
    return dir;
  }

  private static void run(List<String> cmd) throws IOException, InterruptedException {
    Process p;
    try {
      p = new ProcessBuilder(cmd).directory(ROOT.toFile()).redirectErrorStream(true).start();
    } catch (IOException e) {
      throw new IOException(String.join(" ", cmd) + ": " + e.getMessage() + " (Go must be on PATH for these tests)", e);
    }
    byte[] out = p.getInputStream().readAllBytes();
    if (!p.waitFor(600, TimeUnit.SECONDS) || p.exitValue() != 0) {
      p.destroyForcibly();
      throw new IOException(String.join(" ", cmd) + " failed: " + new String(out, StandardCharsets.UTF_8));
    }
  }

  /** A port on 127.0.0.1 that was free a moment ago. */
  public static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
      return s.getLocalPort();
    }
  }

  /**
   * Starts calcd with args (both addresses default to 127.0.0.1:0) and waits, at most 20 s, for
   * its log to say where it listens.
   */
  public static Calcd start(String... args) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>(List.of(binary().toString()));
    List<String> a = List.of(args);
    if (!a.contains("--tcp-addr")) {
      cmd.addAll(List.of("--tcp-addr", "127.0.0.1:0"));
    }
    if (!a.contains("--grpc-addr")) {
      cmd.addAll(List.of("--grpc-addr", "127.0.0.1:0"));
    }
    cmd.addAll(a);
    Path log = Files.createTempFile(Files.createDirectories(ROOT.resolve("client/java/target")), "calcd", ".log");
    Process p = new ProcessBuilder(cmd).redirectOutput(ProcessBuilder.Redirect.DISCARD)
        .redirectError(log.toFile()).start();
    String tcp = null;
    String grpc = null;
    for (int i = 0; i < 200 && (tcp == null || grpc == null); i++) {
      Matcher m = LISTENING.matcher(Files.readString(log));
      while (m.find()) {
        if (m.group(1).equals("tcp")) {
          tcp = m.group(2);
        } else {
          grpc = m.group(2);
        }
      }
      if (tcp == null || grpc == null) {
        if (!p.isAlive()) {
          break;
        }
        Thread.sleep(100);
      }
    }
    if (tcp == null || grpc == null) {
      p.destroyForcibly();
      throw new IOException("calcd " + a + " did not start: " + Files.readString(log));
    }
    return new Calcd(p, log, tcp, grpc);
  }

  /** Its raw TCP address, HOST:PORT. */
  public String tcp() {
    return tcp;
  }

  /** Its gRPC address, HOST:PORT. */
  public String grpc() {
    return grpc;
  }

  /** Its log so far. */
  public String log() throws IOException {
    return Files.readString(log);
  }

  /** How many calls over raw TCP its log records (successful ones need --log-level debug). */
  public int tcpCalls() throws IOException {
    int n = 0;
    for (String line : Files.readAllLines(log)) {
      if (line.contains("\"msg\":\"call\",\"transport\":\"tcp\"")) {
        n++;
      }
    }
    return n;
  }

  /** SIGKILL, and waits for it to be gone. */
  public void kill() throws InterruptedException {
    process.destroyForcibly();
    process.waitFor(10, TimeUnit.SECONDS);
  }

  /** SIGTERM (the drain), then SIGKILL if it is still there after 10 s. */
  @Override
  public void close() throws InterruptedException {
    process.destroy();
    if (!process.waitFor(10, TimeUnit.SECONDS)) {
      process.destroyForcibly();
      process.waitFor(10, TimeUnit.SECONDS);
    }
  }
}
