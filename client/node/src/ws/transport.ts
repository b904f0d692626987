// A connect-es Transport over calc's raw TCP protocol carried by a
// WebSocket (calcd's HTTP port, /ws, subprotocol calc.v1), so a page uses
// the very typed client as Node does over gRPC or raw TCP, CalculateStream
// included (which Connect over HTTP/1.1 cannot carry):
//
//   const client = createClient(CalculatorService, createWebSocketTransport({ url: "ws://127.0.0.1:8080/ws" }));
//   const { result } = await client.calculate({ operator: Operator.ADD, lhs: 2n, rhs: 3n });
//
// Call options work as with connect: timeoutMs (deadline budget), signal
// (AbortSignal: cancels with a CANCEL frame), headers (the call's metadata,
// such as authorization: Bearer <token>; a browser cannot set headers on
// the WebSocket itself, so the token rides in each call). Errors are
// ConnectErrors (CalcError) with the server's code, message and details.
// Standard Web APIs only: no Node module is imported here.

import type { DescMessage, DescMethodStreaming, DescMethodUnary, MessageInitShape } from "@bufbuild/protobuf";
import { Code, type StreamResponse, type Transport, type UnaryResponse } from "@connectrpc/connect";
import { callMetadata, encodeRequest, methodPath, streamResponse, unaryResponse, type HeadersInit } from "../core/transport.js";
import { CalcError } from "../errors.js";
import { CalcWebSocketConnection, type WebSocketCallOptions, type WebSocketConnectionOptions } from "./connection.js";

/** Options of createWebSocketTransport. */
export interface WebSocketTransportOptions extends WebSocketConnectionOptions {
  /** calcd's WebSocket endpoint: "ws://host:8080/ws" (or wss:// with TLS). */
  url: string;
  /** Metadata sent with every call (merged under each call's headers), e.g. a bearer token. */
  metadata?: HeadersInit;
}

/** A Transport over a WebSocket; close() closes its connection. */
export interface WebSocketTransport extends Transport {
  /** The current connection, connecting first if there is none usable. */
  connection(): Promise<CalcWebSocketConnection>;
  /** Closes the connection gracefully (calls in flight finish first). */
  close(): Promise<void>;
}

/**
 * Creates a Transport that runs calls over one WebSocket to calcd, opened on
 * first use. After a GOAWAY or a closed connection the next call opens a new
 * one; calls failed by a GOAWAY carry safeToRetry = true.
 */
export function createWebSocketTransport(options: WebSocketTransportOptions): WebSocketTransport {
  let current: Promise<CalcWebSocketConnection> | undefined;
  const open = () => CalcWebSocketConnection.connect(options.url, options);

  const connection = (): Promise<CalcWebSocketConnection> => {
    if (current) {
      const c = current;
      current = c.then(
        (conn) => (conn.isOpen ? conn : open()),
        () => open(),
      );
      if (current !== c) {
        current.catch(() => {});
      }
      return current;
    }
    current = open();
    return current;
  };

  /** The connection for one call: waiting for it counts against the call's deadline and is cut short by its signal. */
  const connectionFor = (signal: AbortSignal | undefined, timeoutMs: number | undefined): Promise<CalcWebSocketConnection> => {
    const conn = connection();
    if (timeoutMs === undefined && signal === undefined) {
      return conn;
    }
    return new Promise<CalcWebSocketConnection>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => {
        cleanup();
        reject(new CalcError("call cancelled while connecting", Code.Canceled, { safeToRetry: true, cause: signal?.reason }));
      };
      const cleanup = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          cleanup();
          reject(new CalcError(`deadline of ${timeoutMs} ms exceeded while connecting`, Code.DeadlineExceeded, { safeToRetry: true }));
        }, Math.max(0, timeoutMs));
      }
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      conn.then(
        (c) => {
          cleanup();
          resolve(c);
        },
        (e: unknown) => {
          cleanup();
          reject(e);
        },
      );
    });
  };

  const callOptions = (signal: AbortSignal | undefined, timeoutMs: number | undefined, header: HeadersInit | undefined): WebSocketCallOptions => {
    const opts: WebSocketCallOptions = { signal, timeoutMs };
    const metadata = callMetadata(options.metadata, header);
    if (metadata) {
      opts.metadata = metadata;
    }
    return opts;
  };

  return {
    connection,

    async close(): Promise<void> {
      if (current) {
        const conn = await current.catch(() => undefined);
        current = undefined;
        await conn?.close();
      }
    },

    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
    ): Promise<UnaryResponse<I, O>> {
      const started = performance.now();
      const conn = await connectionFor(signal, timeoutMs);
      const remaining = timeoutMs === undefined ? undefined : timeoutMs - (performance.now() - started);
      const res = await conn.unary(methodPath(method), encodeRequest(method, input), callOptions(signal, remaining, header));
      return unaryResponse(method, res);
    },

    async stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
    ): Promise<StreamResponse<I, O>> {
      const started = performance.now();
      const conn = await connectionFor(signal, timeoutMs);
      const remaining = timeoutMs === undefined ? undefined : timeoutMs - (performance.now() - started);
      const s = conn.stream(methodPath(method), callOptions(signal, remaining, header));
      return streamResponse(method, s, input);
    },
  };
}
