// The gRPC side: connect-node's gRPC transport (HTTP/2, the real gRPC
// protocol) pointed at calcd, with optional snappy message compression
// (calcd registers a "snappy" grpc-encoding of snappy blocks), TLS 1.3 (ALPN
// h2, mutual TLS, a server name override) and a bearer token on every call.

import * as net from "node:net";
import type { Duplex } from "node:stream";
import * as tls from "node:tls";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import type { Compression } from "@connectrpc/connect/protocol";
import { createGrpcTransport, type GrpcTransportOptions } from "@connectrpc/connect-node";
import type { Transport } from "@connectrpc/connect";
import snappy from "snappy";
import { CalcError } from "./errors.js";
import { CalculatorService } from "./gen/calculator/v1/calculator_pb.js";
import { bearer, checkToken, loadTls, tlsConnectOptions, tlsEnabled, type SecurityOptions, type TlsMaterial } from "./security.js";
import { connectionError } from "./tcp/dial.js";
import { parseAddress } from "./tcp/connection.js";
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
export type CalcGrpcTransportOptions = Partial<GrpcTransportOptions> &
  SecurityOptions & {
    /**
     * calcd's gRPC address, "host:port": plaintext HTTP/2 (h2c), or TLS 1.3
     * with ALPN h2 when a tls* option is set.
     */
    address: string;
    /** Compress requests with snappy (responses are accepted either way). */
    snappy?: boolean;
  };

/**
 * Socket errors of gRPC connections, by the error object Node reports, with
 * what they mean: connect-node would call a failed TLS handshake INTERNAL
 * or ABORTED, gRPC calls it UNAVAILABLE.
 */
const connectionErrors = new WeakMap<object, CalcError>();

/** The CalcError a connection failure somewhere in err's cause chain stands for. */
function connectionFailure(err: unknown): CalcError | undefined {
  for (let c = err, depth = 0; c !== null && typeof c === "object" && depth < 8; c = (c as { cause?: unknown }).cause, depth++) {
    const mapped = connectionErrors.get(c);
    if (mapped) {
      return mapped;
    }
  }
  return undefined;
}

/** Rethrows a connection failure as its UNAVAILABLE CalcError, anything else as it is. */
function mapConnectionFailure(err: unknown): never {
  throw connectionFailure(err) ?? err;
}

/** @internal The grpc-timeout header's value in milliseconds ("200m" is 200), or undefined. */
export function grpcTimeoutMs(value: string | null): number | undefined {
  const m = /^(\d{1,8})([HMSmun])$/.exec(value ?? "");
  if (!m) {
    return undefined;
  }
  const perUnit: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };
  return Number(m[1]) * perUnit[m[2]];
}

/**
 * A call reset (CANCELLED) once its deadline has passed ended because of
 * the deadline: DEADLINE_EXCEEDED, as grpc-go's client reports it. Without
 * this, connect-node reports CANCELLED when the stream's reset is read
 * before its own deadline timer has run (a race it loses now and then under
 * load: about 1 stream_deadline_expires case in 40).
 */
function deadlineOutcome(err: unknown, signal: AbortSignal, started: number, timeoutMs: number | undefined): unknown {
  if (!(err instanceof ConnectError) || err.code !== Code.Canceled || timeoutMs === undefined) {
    return err;
  }
  if (signal.aborted && ConnectError.from(signal.reason).code !== Code.DeadlineExceeded) {
    return err; // the caller cancelled
  }
  if (performance.now() - started < timeoutMs && !signal.aborted) {
    return err;
  }
  return new ConnectError("the operation timed out", Code.DeadlineExceeded, undefined, undefined, err);
}

/**
 * Opens each HTTP/2 connection of the transport ourselves: TLS 1.3 with ALPN
 * h2 and the server verified against tlsServerName or the host (SNI only for
 * a host name), or TCP; socket errors are recorded for mapConnectionFailure.
 */
function connectionFactory(address: string, m: TlsMaterial | undefined): (authority: URL) => Duplex {
  const { host, port } = parseAddress(address);
  return () => {
    const socket = m ? tls.connect(tlsConnectOptions(m, host, port, "h2")) : net.connect({ host, port });
    let usable = false;
    socket.once(m ? "secureConnect" : "connect", () => (usable = true));
    if (!m) {
      // A TLS server reads our HTTP/2 preface as a broken handshake and
      // closes without a byte: say so rather than "stream closed".
      socket.once("end", () => {
        if (socket.bytesRead === 0) {
          socket.destroy(
            Object.assign(new Error("the server closed the connection without a byte of HTTP/2: is this a TLS port? (set tls or tlsCa)"), {
              code: "ECONNRESET",
            }),
          );
        }
      });
    }
    socket.on("error", (e) => {
      // Over TLS 1.3 the server's verdict on our certificate arrives after
      // our side of the handshake, as the first read fails.
      if (!usable || socket.bytesRead === 0 || (m !== undefined && (e as { code?: string }).code?.startsWith("ERR_SSL_") === true)) {
        connectionErrors.set(e, connectionError(e, address, { tls: m, handshake: true, host }));
      }
    });
    return socket;
  };
}

/**
 * Creates a gRPC transport (connect-node, HTTP/2) to calcd at address, over
 * TLS when a tls* option is set, sending token as "authorization: Bearer
 * <token>" on every call (refused in plaintext to a host that is not
 * loopback: a CalcError INVALID_ARGUMENT, thrown here). A connection that
 * fails (refused, a TLS handshake that fails, a plaintext port) fails its
 * calls with UNAVAILABLE and a message that says why.
 */
export function createCalcGrpcTransport(options: CalcGrpcTransportOptions): Transport {
  const { address, snappy: useSnappy, tls: _tls, tlsCa, tlsCert, tlsKey, tlsServerName, token, interceptors = [], nodeOptions, ...rest } = options;
  const secure = tlsEnabled(options);
  const { host } = parseAddress(address);
  checkToken(token, secure, host);
  const material = loadTls({ tls: _tls, tlsCa, tlsCert, tlsKey, tlsServerName });
  const calcInterceptor: Interceptor = (next) => async (req) => {
    if (token && !req.header.has("authorization")) {
      req.header.set("authorization", bearer(token));
    }
    const started = performance.now();
    const timeoutMs = grpcTimeoutMs(req.header.get("grpc-timeout"));
    const mapError = (e: unknown): never => mapConnectionFailure(deadlineOutcome(e, req.signal, started, timeoutMs));
    const res = await next(req).catch(mapError);
    if (!res.stream) {
      return res;
    }
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
        } catch (e) {
          mapError(e);
        }
      })(),
    };
  };
  return createGrpcTransport({
    baseUrl: `${secure ? "https" : "http"}://${address}`,
    acceptCompression: [snappyCompression],
    sendCompression: useSnappy ? snappyCompression : undefined,
    interceptors: [calcInterceptor, ...interceptors],
    nodeOptions: { createConnection: connectionFactory(address, material), ...nodeOptions },
    ...rest,
  });
}

/** A typed CalculatorService client over gRPC. */
export function createCalcGrpcClient(options: CalcGrpcTransportOptions): Client<typeof CalculatorService> {
  return createClient(CalculatorService, createCalcGrpcTransport(options));
}
