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

import type { DescMessage, DescMethodStreaming, DescMethodUnary, MessageInitShape } from "@bufbuild/protobuf";
import { createContextKey, type ContextValues, type StreamResponse, type Transport, type UnaryResponse } from "@connectrpc/connect";
import { callMetadata, encodeRequest, methodPath, streamResponse, unaryResponse, type HeadersInit } from "../core/transport.js";
import { CalcTcpChannel, type ChannelCallOptions, type TcpChannelOptions } from "./channel.js";
import type { CalcTcpConnection } from "./connection.js";

/** Options of createTcpTransport: those of its channel, and where to connect. */
export interface TcpTransportOptions extends TcpChannelOptions {
  /** calcd's raw TCP address: "host:port", several as "a:4000,b:4000", or an array of them. */
  address: string | readonly string[];
}

/** A Transport over raw TCP; close() closes its connections. */
export interface TcpTransport extends Transport {
  /** The channel the calls run on: its state (getState(), 'state' events) and endpoints. */
  readonly channel: CalcTcpChannel;
  /** A READY connection, connecting first if there is none. */
  connection(): Promise<CalcTcpConnection>;
  /** Closes the channel: calls in flight finish first. */
  close(): Promise<void>;
}

/**
 * A context value that makes a call wait for a READY connection until its
 * deadline instead of failing fast when no server can be reached:
 * `client.calculate(req, { contextValues: createContextValues().set(waitForReadyKey, true) })`.
 */
export const waitForReadyKey = createContextKey<boolean | undefined>(undefined, { description: "calc raw TCP waitForReady" });

export { methodPath };

/**
 * Creates a Transport whose calls run on a CalcTcpChannel to address: one
 * connection per endpoint, opened on first use, reconnected by itself,
 * calls round robin, calls the server never processed retried (see
 * CalcTcpChannel for every option).
 */
export function createTcpTransport(options: TcpTransportOptions): TcpTransport {
  const { address, ...rest } = options;
  const channel = new CalcTcpChannel(address, rest);

  const callOptions = (
    signal: AbortSignal | undefined,
    timeoutMs: number | undefined,
    header: HeadersInit | undefined,
    contextValues: ContextValues | undefined,
  ): ChannelCallOptions => {
    const opts: ChannelCallOptions = { signal, timeoutMs, waitForReady: contextValues?.get(waitForReadyKey) };
    const metadata = callMetadata(header);
    if (metadata) {
      opts.metadata = metadata;
    }
    return opts;
  };

  return {
    channel,

    connection(): Promise<CalcTcpConnection> {
      return channel.connection();
    },

    close(): Promise<void> {
      return channel.close();
    },

    async unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: MessageInitShape<I>,
      contextValues?: ContextValues,
    ): Promise<UnaryResponse<I, O>> {
      const res = await channel.unary(methodPath(method), encodeRequest(method, input), callOptions(signal, timeoutMs, header, contextValues));
      return unaryResponse(method, res);
    },

    async stream<I extends DescMessage, O extends DescMessage>(
      method: DescMethodStreaming<I, O>,
      signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      header: HeadersInit | undefined,
      input: AsyncIterable<MessageInitShape<I>>,
      contextValues?: ContextValues,
    ): Promise<StreamResponse<I, O>> {
      const s = await channel.stream(methodPath(method), callOptions(signal, timeoutMs, header, contextValues));
      return streamResponse(method, s, input);
    },
  };
}
