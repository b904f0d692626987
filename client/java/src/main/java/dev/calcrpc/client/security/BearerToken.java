package dev.calcrpc.client.security;

import io.grpc.CallCredentials;
import io.grpc.Metadata;
import io.grpc.SecurityLevel;
import io.grpc.Status;
import java.util.concurrent.Executor;

/**
 * Call credentials that send {@code authorization: Bearer <token>} with every call, on either
 * transport: give them to a gRPC channel (CompositeChannelCredentials), a stub
 * ({@code withCallCredentials}) or the raw TCP channel (TcpChannel.Builder.token). Like grpc-go's
 * RequireTransportSecurity they refuse, with UNAUTHENTICATED, to go in plaintext to an authority
 * that is not loopback.
 */
public final class BearerToken extends CallCredentials {
  /** The metadata key calcd reads the token from. */
  public static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);

  private final String token;

  /**
   * Credentials for token.
   *
   * @throws IllegalArgumentException if token is empty or not printable ASCII on one line
   */
  public BearerToken(String token) {
    validate(token);
    this.token = token;
  }

  static void validate(String token) {
    if (token == null || token.isEmpty()) {
      throw new IllegalArgumentException("empty token");
    }
    for (int i = 0; i < token.length(); i++) {
      char c = token.charAt(i);
      if (c < 0x20 || c > 0x7e) {
        throw new IllegalArgumentException("the token must be printable ASCII on one line");
      }
    }
  }

  /** The metadata these credentials add: {@code authorization: Bearer <token>}. */
  public Metadata metadata() {
    Metadata md = new Metadata();
    md.put(AUTHORIZATION, "Bearer " + token);
    return md;
  }

  @Override
  public void applyRequestMetadata(RequestInfo info, Executor appExecutor, MetadataApplier applier) {
    if (info.getSecurityLevel() != SecurityLevel.PRIVACY_AND_INTEGRITY) {
      String host = Hosts.hostOf(info.getAuthority());
      if (!Hosts.isLoopback(host)) {
        applier.fail(Status.UNAUTHENTICATED.withDescription("refusing to send the token in plaintext to " + host
            + ", which is not a loopback address: use TLS"));
        return;
      }
    }
    applier.apply(metadata());
  }

  @Override
  public String toString() {
    return "BearerToken(…)"; // never the token
  }
}
