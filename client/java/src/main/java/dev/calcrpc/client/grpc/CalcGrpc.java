package dev.calcrpc.client.grpc;

import dev.calcrpc.client.security.BearerToken;
import dev.calcrpc.client.security.Hosts;
import dev.calcrpc.client.security.TlsOptions;
import io.grpc.ChannelCredentials;
import io.grpc.Codec;
import io.grpc.CompositeChannelCredentials;
import io.grpc.CompressorRegistry;
import io.grpc.DecompressorRegistry;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import java.io.IOException;

/**
 * Channels to calcd's gRPC endpoint, plaintext or TLS, with a bearer token, optionally able to
 * speak grpc-encoding snappy.
 *
 * <pre>{@code
 * TlsOptions tls = TlsOptions.NONE.withCa(Path.of("certs/ca.pem"))
 *     .withCert(Path.of("certs/client.pem"), Path.of("certs/client-key.pem"));
 * ManagedChannel ch = CalcGrpc.channel("127.0.0.1:50051", tls, System.getenv("CALC_TOKEN"));
 * }</pre>
 */
public final class CalcGrpc {
  private CalcGrpc() {}

  /** A plaintext channel to target ("host:port"). */
  public static ManagedChannel channel(String target) {
    return channel(target, TlsOptions.NONE, null);
  }

  /**
   * A channel to target over TLS if tls asks for it (grpc-java's TlsChannelCredentials: the CA to
   * trust, the client certificate for mutual TLS; the server name through overrideAuthority),
   * sending {@code authorization: Bearer <token>} with every call if token is not null or empty.
   *
   * @throws IllegalArgumentException for TLS files that cannot be loaded (the message names the
   *     file), or a token that would go in plaintext to a host that is not loopback
   */
  public static ManagedChannel channel(String target, TlsOptions tls, String token) {
    return builder(target, tls, token).build();
  }

  /**
   * A plaintext channel with the snappy codec registered for sending (stubs opt in with
   * {@code withCompression("snappy")}) and for receiving (advertised in grpc-accept-encoding).
   */
  public static ManagedChannel snappyChannel(String target, SnappyCodec codec) {
    return snappyChannel(target, codec, TlsOptions.NONE, null);
  }

  /** As {@link #snappyChannel(String, SnappyCodec)}, with TLS and a token as {@link #channel(String, TlsOptions, String)}. */
  public static ManagedChannel snappyChannel(String target, SnappyCodec codec, TlsOptions tls, String token) {
    CompressorRegistry compressors = CompressorRegistry.newEmptyInstance();
    compressors.register(new Codec.Gzip());
    compressors.register(codec);
    DecompressorRegistry decompressors = DecompressorRegistry.getDefaultInstance().with(codec, true);
    return builder(target, tls, token)
        .compressorRegistry(compressors)
        .decompressorRegistry(decompressors)
        .build();
  }

  /** The channel builder {@link #channel(String, TlsOptions, String)} builds, for more settings. */
  public static ManagedChannelBuilder<?> builder(String target, TlsOptions tls, String token) {
    TlsOptions t = tls == null ? TlsOptions.NONE : tls;
    boolean hasToken = token != null && !token.isEmpty();
    Hosts.checkToken(token, t.isOn(), target);
    ChannelCredentials creds;
    if (t.isOn()) {
      try {
        creds = t.channelCredentials();
      } catch (IOException e) {
        throw new IllegalArgumentException(e.getMessage(), e);
      }
    } else {
      creds = InsecureChannelCredentials.create();
    }
    if (hasToken) {
      creds = CompositeChannelCredentials.create(creds, new BearerToken(token));
    }
    ManagedChannelBuilder<?> b = Grpc.newChannelBuilder(target, creds);
    if (t.serverName() != null) {
      b.overrideAuthority(t.serverName());
    }
    return b;
  }
}
