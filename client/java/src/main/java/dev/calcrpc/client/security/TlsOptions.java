package dev.calcrpc.client.security;

import io.grpc.ChannelCredentials;
import io.grpc.TlsChannelCredentials;
import java.io.IOException;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.X509Certificate;
import java.util.List;
import java.util.Objects;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;

/**
 * A client's TLS configuration, with the Go and Python clients' option names: {@code tls},
 * {@code tlsCa}, {@code tlsCert}/{@code tlsKey} and {@code tlsServerName} (the conformance runner's
 * --tls, --tls-ca, --tls-cert, --tls-key and --tls-server-name). Any of them turns TLS on;
 * {@code tls} alone trusts the JDK's default roots. Immutable: the with* methods return copies.
 *
 * <p>{@link #managers()} loads the files once; {@link #channelCredentials()} gives grpc-java's
 * TlsChannelCredentials and {@link #sslContext()} the raw TCP client's context (which
 * TcpConnection runs with TLS 1.3 only, ALPN {@value #ALPN} and HTTPS host name verification).
 */
public final class TlsOptions {
  /** The ALPN protocol calc's raw TCP transport requires over TLS (PROTOCOL.md, TLS). */
  public static final String ALPN = "calc/1";

  /** Plaintext. */
  public static final TlsOptions NONE = new TlsOptions(false, null, null, null, null);

  private final boolean enabled;
  private final Path ca;
  private final Path cert;
  private final Path key;
  private final String serverName;

  private TlsOptions(boolean enabled, Path ca, Path cert, Path key, String serverName) {
    this.enabled = enabled;
    this.ca = ca;
    this.cert = cert;
    this.key = key;
    this.serverName = serverName == null || serverName.isEmpty() ? null : serverName;
  }

  /** TLS on (true) or off, trusting the JDK's default roots unless {@link #withCa} is set (--tls). */
  public TlsOptions withTls(boolean on) {
    return new TlsOptions(on, ca, cert, key, serverName);
  }

  /** A PEM file of the CA certificates to trust instead of the JDK's (--tls-ca); null for none. */
  public TlsOptions withCa(Path caFile) {
    return new TlsOptions(enabled, caFile, cert, key, serverName);
  }

  /**
   * The client certificate (chain) and its PKCS#8 private key, PEM, for a server that requires
   * mutual TLS (--tls-cert, --tls-key); both or neither.
   */
  public TlsOptions withCert(Path certFile, Path keyFile) {
    return new TlsOptions(enabled, ca, certFile, keyFile, serverName);
  }

  /** The name to verify the server's certificate against instead of the target's host (--tls-server-name). */
  public TlsOptions withServerName(String name) {
    return new TlsOptions(enabled, ca, cert, key, name);
  }

  /** Whether any option asks for TLS. */
  public boolean isOn() {
    return enabled || ca != null || cert != null || key != null || serverName != null;
  }

  /** The CA file, or null. */
  public Path ca() {
    return ca;
  }

  /** The client certificate file, or null. */
  public Path cert() {
    return cert;
  }

  /** The client key file, or null. */
  public Path key() {
    return key;
  }

  /** The server name override, or null for the target's host. */
  public String serverName() {
    return serverName;
  }

  /** The loaded trust and key managers (key managers empty without a client certificate). */
  public record Managers(List<TrustManager> trust, List<KeyManager> keys) {}

  /**
   * Reads the files: the CA bundle into a trust manager (the JDK's default roots without one), the
   * client certificate and key into a key manager, checking that they go together.
   *
   * @throws IOException naming the file and the problem (unreadable, no certificate, a key that is
   *     not PKCS#8 or does not match the certificate, a certificate without its key)
   */
  public Managers managers() throws IOException {
    if ((cert == null) != (key == null)) {
      throw new IOException("--tls-cert and --tls-key go together");
    }
    try {
      TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
      if (ca == null) {
        tmf.init((KeyStore) null);
      } else {
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        int i = 0;
        for (X509Certificate c : Pem.certificates(ca)) {
          ks.setCertificateEntry("ca-" + i++, c);
        }
        tmf.init(ks);
      }
      List<KeyManager> keys = List.of();
      if (cert != null) {
        List<X509Certificate> chain = Pem.certificates(cert);
        PrivateKey pk = Pem.privateKey(key);
        Pem.checkPair(chain.get(0), pk, cert, key);
        KeyStore ks = KeyStore.getInstance("PKCS12");
        ks.load(null, null);
        char[] none = new char[0];
        ks.setKeyEntry("client", pk, none, chain.toArray(new X509Certificate[0]));
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(ks, none);
        keys = List.of(kmf.getKeyManagers());
      }
      return new Managers(List.of(tmf.getTrustManagers()), keys);
    } catch (GeneralSecurityException e) {
      throw new IOException("TLS configuration: " + e.getMessage(), e);
    }
  }

  /**
   * The raw TCP client's context: the managers of {@link #managers()} in a TLSv1.3 SSLContext.
   * TcpConnection sets the rest per connection (TLS 1.3 only, ALPN, SNI, host name verification).
   */
  public SSLContext sslContext() throws IOException {
    Managers m = managers();
    try {
      SSLContext ctx = SSLContext.getInstance("TLSv1.3");
      ctx.init(m.keys().isEmpty() ? null : m.keys().toArray(new KeyManager[0]), m.trust().toArray(new TrustManager[0]), null);
      return ctx;
    } catch (GeneralSecurityException e) {
      throw new IOException("TLS 1.3 is not available in this JDK: " + e.getMessage(), e);
    }
  }

  /**
   * grpc-java's TlsChannelCredentials with the managers of {@link #managers()}. Use with
   * {@code Grpc.newChannelBuilder(target, creds)} and, for {@link #serverName()},
   * {@code overrideAuthority}; calcd itself refuses TLS below 1.3 (grpc-java's credentials have no
   * minimum-version setting).
   */
  public ChannelCredentials channelCredentials() throws IOException {
    Managers m = managers();
    TlsChannelCredentials.Builder b = TlsChannelCredentials.newBuilder().trustManager(m.trust().toArray(new TrustManager[0]));
    if (!m.keys().isEmpty()) {
      b.keyManager(m.keys().toArray(new KeyManager[0]));
    }
    return b.build();
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof TlsOptions t && enabled == t.enabled && Objects.equals(ca, t.ca) && Objects.equals(cert, t.cert)
        && Objects.equals(key, t.key) && Objects.equals(serverName, t.serverName);
  }

  @Override
  public int hashCode() {
    return Objects.hash(enabled, ca, cert, key, serverName);
  }

  @Override
  public String toString() {
    return isOn() ? "TlsOptions(ca=" + ca + ", cert=" + cert + ", key=" + key + ", serverName=" + serverName + ")" : "TlsOptions(off)";
  }
}
