package dev.calcrpc.client.grpc;

import io.grpc.Codec;
import io.grpc.CompressorRegistry;
import io.grpc.DecompressorRegistry;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;

/** Channels to calcd's gRPC endpoint (plaintext), optionally able to speak grpc-encoding snappy. */
public final class CalcGrpc {
  private CalcGrpc() {}

  /** A plaintext channel to target ("host:port"). */
  public static ManagedChannel channel(String target) {
    return ManagedChannelBuilder.forTarget(target).usePlaintext().build();
  }

  /**
   * A plaintext channel with the snappy codec registered for sending (stubs opt in with
   * {@code withCompression("snappy")}) and for receiving (advertised in grpc-accept-encoding).
   */
  public static ManagedChannel snappyChannel(String target, SnappyCodec codec) {
    CompressorRegistry compressors = CompressorRegistry.newEmptyInstance();
    compressors.register(new Codec.Gzip());
    compressors.register(codec);
    DecompressorRegistry decompressors = DecompressorRegistry.getDefaultInstance().with(codec, true);
    return ManagedChannelBuilder.forTarget(target)
        .usePlaintext()
        .compressorRegistry(compressors)
        .decompressorRegistry(decompressors)
        .build();
  }
}
