package dev.calcrpc.client.security;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.Signature;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads the PEM files the TLS options name: certificates (a CA bundle, a certificate chain) and an
 * unencrypted PKCS#8 private key ("BEGIN PRIVATE KEY"), EC, RSA or Ed25519, as {@code go run
 * ./tools/devcerts} and Go's x509.MarshalPKCS8PrivateKey write them. Every failure is an
 * IOException whose message names the file and what is wrong with it.
 */
public final class Pem {
  private static final Pattern BLOCK =
      Pattern.compile("-----BEGIN ([A-Z0-9 ]+)-----([A-Za-z0-9+/=\\s]*?)-----END \\1-----");

  private Pem() {}

  /** Every certificate in a PEM file, in order; at least one. */
  public static List<X509Certificate> certificates(Path file) throws IOException {
    List<X509Certificate> out = new ArrayList<>();
    CertificateFactory cf;
    try {
      cf = CertificateFactory.getInstance("X.509");
    } catch (CertificateException e) {
      throw new IllegalStateException(e);
    }
    for (Block b : blocks(file)) {
      if (!b.type().equals("CERTIFICATE")) {
        continue;
      }
      try {
        out.add((X509Certificate) cf.generateCertificate(new ByteArrayInputStream(b.der())));
      } catch (CertificateException e) {
        throw new IOException(file + ": not a valid certificate: " + e.getMessage(), e);
      }
    }
    if (out.isEmpty()) {
      throw new IOException(file + ": no PEM certificate in it");
    }
    return out;
  }

  /** The private key in a PEM file: the first "PRIVATE KEY" (PKCS#8) block. */
  public static PrivateKey privateKey(Path file) throws IOException {
    for (Block b : blocks(file)) {
      switch (b.type()) {
        case "PRIVATE KEY" -> {
          return pkcs8(file, b.der());
        }
        case "EC PRIVATE KEY", "RSA PRIVATE KEY" -> throw new IOException(file + ": the key is " + b.type()
            + " (SEC 1 / PKCS#1); Java reads PKCS#8: convert it with openssl pkcs8 -topk8 -nocrypt -in " + file
            + " -out key.pem");
        case "ENCRYPTED PRIVATE KEY" -> throw new IOException(file + ": the key is encrypted; give an unencrypted PKCS#8 key");
        default -> {
          // not a key: look further
        }
      }
    }
    throw new IOException(file + ": no PEM \"PRIVATE KEY\" block in it");
  }

  private static PrivateKey pkcs8(Path file, byte[] der) throws IOException {
    PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(der);
    for (String alg : List.of("EC", "RSA", "Ed25519", "RSASSA-PSS")) {
      try {
        return KeyFactory.getInstance(alg).generatePrivate(spec);
      } catch (GeneralSecurityException e) {
        // try the next algorithm
      }
    }
    throw new IOException(file + ": a PKCS#8 key of an algorithm this JDK cannot read (EC, RSA or Ed25519 expected)");
  }

  /**
   * Checks that key is the private key of cert's public key, by signing and verifying a few bytes
   * (as Go's tls.LoadX509KeyPair checks), so a mismatch is reported at load and not as a handshake
   * failure later.
   */
  public static void checkPair(X509Certificate cert, PrivateKey key, Path certFile, Path keyFile) throws IOException {
    String alg = switch (key.getAlgorithm()) {
      case "EC" -> "SHA256withECDSA";
      case "RSA" -> "SHA256withRSA";
      case "Ed25519", "EdDSA" -> "Ed25519";
      default -> null;
    };
    if (alg == null) {
      return; // nothing cheap to check with
    }
    byte[] probe = "calc key check".getBytes(StandardCharsets.US_ASCII);
    boolean ok;
    try {
      Signature s = Signature.getInstance(alg);
      s.initSign(key);
      s.update(probe);
      byte[] sig = s.sign();
      Signature v = Signature.getInstance(alg);
      v.initVerify(cert.getPublicKey());
      v.update(probe);
      ok = v.verify(sig);
    } catch (GeneralSecurityException e) {
      ok = false;
    }
    if (!ok) {
      throw new IOException(keyFile + " is not the private key of the certificate in " + certFile);
    }
  }

  private record Block(String type, byte[] der) {}

  private static List<Block> blocks(Path file) throws IOException {
    String text;
    try {
      text = Files.readString(file, StandardCharsets.US_ASCII);
    } catch (IOException e) {
      throw new IOException("cannot read " + file + ": " + e, e);
    }
    List<Block> out = new ArrayList<>();
    Matcher m = BLOCK.matcher(text);
    while (m.find()) {
      try {
        out.add(new Block(m.group(1), Base64.getMimeDecoder().decode(m.group(2))));
      } catch (IllegalArgumentException e) {
        throw new IOException(file + ": bad base64 in a PEM " + m.group(1) + " block", e);
      }
    }
    return out;
  }
}
