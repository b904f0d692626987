// The gRPC side: connect-node's gRPC transport (HTTP/2, the real gRPC
// protocol) pointed at calcd, with optional snappy message compression
// (calcd registers a "snappy" grpc-encoding of snappy blocks).

import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import { createGrpcTransport, type GrpcTransportOptions } from "@connectrpc/connect-node";
import type { Transport } from "@connectrpc/connect";
import snappy from "snappy";
import { CalculatorService } from "./gen/calculator/v1/calculator_pb.js";
import { snappyDecodedLen } from "./wire/message.js";

/**
 * The "snappy" grpc-encoding: each message one snappy block, its decoded
 * length checked against the read limit before anything is decoded.
 */
export const snappyCompression: Compression = {
  name: "snappy",
  compress(bytes: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    const out = snappy.compressSync(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    return Promise.resolve(new Uint8Array(out));
  },
  decompress(bytes: Uint8Array, readMaxBytes: number): Promise<Uint8Array<ArrayBuffer>> {
    if (bytes.length === 0) {
      return Promise.resolve(new Uint8Array(0));
    }
    try {
      const n = snappyDecodedLen(bytes);
      if (n > readMaxBytes) {
        throw new ConnectError(`message size ${n} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
      }
      const out = snappy.uncompressSync(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), { asBuffer: true }) as Buffer;
      return Promise.resolve(new Uint8Array(out));
    } catch (e) {
      return Promise.reject(e instanceof ConnectError ? e : new ConnectError(`snappy: ${(e as Error).message}`, Code.Internal));
    }
  },
};

/** Options of createCalcGrpcTransport. */
export type CalcGrpcTransportOptions = Partial<GrpcTransportOptions> & {
  /** calcd's gRPC address, "host:port" (plaintext HTTP/2). */
  address: string;
  /** Compress requests with snappy (responses are accepted either way). */
  snappy?: boolean;
};

/** Creates a gRPC transport (connect-node, HTTP/2) to calcd at address. */
export function createCalcGrpcTransport(options: CalcGrpcTransportOptions): Transport {
  const { address, snappy: useSnappy, ...rest } = options;
  return createGrpcTransport({
    baseUrl: `http://${address}`,
    acceptCompression: [snappyCompression],
    sendCompression: useSnappy ? snappyCompression : undefined,
    ...rest,
  });
}

/** A typed CalculatorService client over gRPC. */
export function createCalcGrpcClient(options: CalcGrpcTransportOptions): Client<typeof CalculatorService> {
  return createClient(CalculatorService, createCalcGrpcTransport(options));
}
