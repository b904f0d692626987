// A connect-es Transport over calc's raw TCP protocol, so the typed client
// is the very one used for gRPC:
//
//   const client = createClient(CalculatorService, createTcpTransport({ address: "127.0.0.1:4000" }));
//   const { result } = await client.calculate({ operator: Operator.ADD, lhs: 2n, rhs: 3n });
//
// Call options work as with connect: timeoutMs (deadline budget), signal
// (AbortSignal: cancels with a CANCEL frame), headers (raw TCP metadata).
// Errors are ConnectErrors (CalcError) with the server's code, message and
// details (findDetails(BadRequestSchema) etc.).

import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescMethodStreaming,
  type DescMethodUnary,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import { Code, type StreamResponse, type Transport, type UnaryResponse } from "@connectrpc/connect";
import { CalcError } from "../errors.js";
import { CalcTcpConnection, type TcpCallOptions, type TcpConnectionOptions } from "./connection.js";

/** What connect passes as call headers (HeadersInit, without needing the DOM lib). */
type HeadersInit = ConstructorParameters<typeof Headers>[0];

/** Options of createTcpTransport. */
export interface TcpTransportOptions extends TcpConnectionOptions {
  /** calcd's raw TCP address, "host:port". */
  address: string;
}

/** A Transport over raw TCP; close() closes its connection. */
export interface TcpTransport extends Transport {
  /** The current connection, connecting first if there is none usable. */
  connection(): Promise<CalcTcpConnection>;
  /** Closes the connection gracefully (calls in flight finish first). */
  close(): Promise<void>;
}

/** Returns the full method name of a method: "/pkg.Service/Method". */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/**
 * Creates a Transport that runs calls over one raw TCP connection to calcd,
 * opened on first use. After a GOAWAY or a closed connection the next call
 * opens a new one; calls failed by a GOAWAY carry safeToRetry = true.
 */
export function createTcpTransport(options: TcpTransportOptions): TcpTransport {
  let current: Promise<CalcTcpConnection> | undefined;

  const connection = (): Promise<CalcTcpConnection> => {
    if (current) {
      const c = current;
      current = c.then(
        (conn) => (conn.isOpen ? conn : CalcTcpConnection.connect(options.address, options)),
        () => CalcTcpConnection.connect(options.address, options),
      );
      if (current !== c) {
        current.catch(() => {});
      }
      return current;
    }
    current = CalcTcpConnection.connect(options.address, options);
    return current;
  };

  /**
   * The connection for one call: waiting for it counts against the call's
   * deadline and is cut short by its signal.
   */
  const connectionFor = (signal: AbortSignal | undefined, timeoutMs: number | undefined): Promise<CalcTcpConnection> => {
    const conn = connection();
    if (timeoutMs === undefined && signal === undefined) {
      return conn;
    }
    return new Promise<CalcTcpConnection>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
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

  const callOptions = (signal: AbortSignal | undefined, timeoutMs: number | undefined, header: HeadersInit | undefined): TcpCallOptions => {
    const opts: TcpCallOptions = { signal, timeoutMs };
    if (header !== undefined) {
      const h = new Headers(header);
      let any = false;
      h.forEach(() => (any = true));
      if (any) {
        opts.metadata = h;
      }
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
      const req = toBinary(method.input, create(method.input, input));
      const res = await conn.unary(methodPath(method), req, callOptions(signal, remaining, header));
      let message: MessageShape<O>;
      try {
        message = fromBinary(method.output, res);
      } catch (e) {
        throw new CalcError(`cannot decode ${method.output.typeName}: ${(e as Error).message}`, Code.Internal, { cause: e });
      }
      return {
        stream: false,
        service: method.parent,
        method,
        header: new Headers(),
        message,
        trailer: new Headers(),
      };
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

      // Pump the input while the caller reads: ends with HALF_CLOSE, stops
      // when the call ends, cancels the call if the input fails.
      void (async () => {
        const it = input[Symbol.asyncIterator]();
        try {
          for (;;) {
            const r = await Promise.race([it.next(), s.status.then(() => undefined)]);
            if (r === undefined || s.done) {
              break;
            }
            if (r.done) {
              s.closeSend();
              return;
            }
            await s.send(toBinary(method.input, create(method.input, r.value)));
          }
          // The call ended first: release the input without waiting on it (a
          // generator suspended in next() would only return after that).
          Promise.resolve()
            .then(() => it.return?.())
            .catch(() => {});
        } catch {
          s.cancel();
        }
      })();

      async function* messages(): AsyncGenerator<MessageShape<O>> {
        for await (const bytes of s) {
          let m: MessageShape<O>;
          try {
            m = fromBinary(method.output, bytes);
          } catch (e) {
            s.cancel();
            throw new CalcError(`cannot decode ${method.output.typeName}: ${(e as Error).message}`, Code.Internal, { cause: e });
          }
          yield m;
        }
      }

      return {
        stream: true,
        service: method.parent,
        method,
        header: new Headers(),
        message: messages(),
        trailer: new Headers(),
      };
    },
  };
}
