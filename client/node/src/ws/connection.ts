// CalcWebSocketConnection: calc's raw TCP protocol (PROTOCOL.md) over one
// WebSocket to calcd's HTTP port (/ws, subprotocol calc.v1), for browsers:
// many calls in flight paired by id, unary calls as promises, streaming
// calls as async iterables, AbortSignal cancellation, deadlines, metadata,
// snappy compression, ping/pong keepalive and GOAWAY handling: src/core's
// Connection, the one CalcTcpConnection runs over a socket, here over a
// WebSocket (MessageStream, below). It uses standard Web APIs only
// (WebSocket, Uint8Array, DataView, TextEncoder, timers): in Node, pass a
// WebSocket implementation (the ws package) as options.WebSocket, or use
// Node 22's global WebSocket.

import { Code } from "@connectrpc/connect";
import { CalcError } from "../errors.js";
import { Connection, unavailable, type ByteStream, type CallOptions, type CallState, type CallStatus, type ConnectionOptions, type GoawayInfo } from "../core/connection.js";
import { CallStream } from "../core/stream.js";
import type { Goaway, Settings } from "../wire/control.js";

/** The WebSocket subprotocol of calc's raw TCP protocol, version 1. */
export const SUBPROTOCOL = "calc.v1";

/**
 * What the connection needs of a WebSocket: the browser's WebSocket, Node
 * 22's global one and the ws package's all fit.
 */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly protocol: string;
  readonly bufferedAmount: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: never) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: never) => void) | null;
}

/** A WebSocket constructor: `new WebSocket(url, protocols)`. */
export type WebSocketConstructor = new (url: string, protocols: string | string[]) => WebSocketLike;

/** Options of a connection. */
export interface WebSocketConnectionOptions extends ConnectionOptions {
  /**
   * The WebSocket implementation; default globalThis.WebSocket (browsers,
   * Node 22+). In Node 20 pass the ws package's: `WebSocket` from "ws".
   */
  WebSocket?: WebSocketConstructor;
  /** Time allowed for the WebSocket handshake plus the server's SETTINGS. Default 10 s. */
  connectTimeoutMs?: number;
}

/** Options of one call. */
export interface WebSocketCallOptions extends CallOptions {}

/** The final status of a call, with where it came from. */
export interface WebSocketCallStatus extends CallStatus {}

/** Frames queued in one tick go out in one message, up to this many bytes. */
const COALESCE_BYTES = 64 << 10;
/** A stream's send waits while the WebSocket buffers more than this. */
const SEND_HIGH_WATER = 1 << 20;

/**
 * A WebSocket as a connection's ByteStream. Everything written in one tick
 * leaves in one binary message (at most COALESCE_BYTES, or one frame
 * alone): the server reads the messages as one byte stream, so a message
 * need not end on a frame boundary, but it may not exceed the max frame
 * size plus 4 bytes, which one frame never does.
 */
class MessageStream implements ByteStream {
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private done = false;
  private resolveClosed!: () => void;
  readonly closed = new Promise<void>((resolve) => (this.resolveClosed = resolve));

  constructor(
    private readonly socket: WebSocketLike,
    private readonly conn: Connection,
    url: string,
  ) {
    let opened = false;
    socket.onopen = () => {
      opened = true;
      if (socket.protocol !== SUBPROTOCOL) {
        conn.protocolError(`the server chose the WebSocket subprotocol ${JSON.stringify(socket.protocol)}, not ${SUBPROTOCOL}`);
        return;
      }
      conn.begin();
    };
    socket.onmessage = (ev) => {
      const data = ev.data;
      if (data instanceof ArrayBuffer) {
        conn.receive(new Uint8Array(data));
      } else if (ArrayBuffer.isView(data)) {
        conn.receive(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      } else {
        conn.protocolError("a text message on a calc.v1 WebSocket");
      }
    };
    socket.onerror = () => {}; // the close event follows, and says more
    socket.onclose = (ev) => {
      if (!opened) {
        conn.shutdown(
          new CalcError(
            `cannot open a WebSocket to ${withoutQuery(url)} (close code ${ev.code}): the server is unreachable or refused the upgrade ` +
              `(an origin or subprotocol it does not allow)`,
            Code.Unavailable,
            { safeToRetry: true },
          ),
        );
        return;
      }
      conn.peerClosed(`WebSocket closed by the server (${ev.code}${ev.reason ? ` ${ev.reason}` : ""})`);
    };
  }

  write(bytes: Uint8Array): void {
    if (this.pendingBytes > 0 && this.pendingBytes + bytes.length > COALESCE_BYTES) {
      this.flush();
    }
    if (this.pending.length === 0) {
      queueMicrotask(() => this.flush());
    }
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
  }

  private flush(): void {
    if (this.pending.length === 0 || this.done) {
      return;
    }
    let msg: Uint8Array;
    if (this.pending.length === 1) {
      msg = this.pending[0];
    } else {
      msg = new Uint8Array(this.pendingBytes);
      let off = 0;
      for (const b of this.pending) {
        msg.set(b, off);
        off += b.length;
      }
    }
    this.pending = [];
    this.pendingBytes = 0;
    try {
      this.socket.send(msg);
    } catch (e) {
      this.conn.shutdown(unavailable(`WebSocket send failed: ${(e as Error).message}`));
    }
  }

  writable(gaveUp: () => boolean): Promise<void> | undefined {
    if (this.socket.bufferedAmount + this.pendingBytes <= SEND_HIGH_WATER) {
      return undefined;
    }
    // A WebSocket has no drain event: look again until its buffer empties.
    return new Promise<void>((resolve) => {
      const check = () => {
        if (this.done || gaveUp() || this.socket.bufferedAmount <= SEND_HIGH_WATER / 2) {
          resolve();
        } else {
          setTimeout(check, 5);
        }
      };
      setTimeout(check, 0);
    });
  }

  /** The connection drained after close(): send what is queued and close, reporting no error. */
  end(): void {
    this.flush();
    this.conn.shutdown(unavailable("connection closed by the client"), true);
  }

  destroy(): void {
    this.done = true;
    this.pending = [];
    this.pendingBytes = 0;
    try {
      this.socket.close(1000);
    } catch {
      // already closing
    }
    this.resolveClosed();
  }
}

/**
 * One WebSocket to calcd's /ws. Create it with
 * CalcWebSocketConnection.connect(); it is ready (SETTINGS received) when
 * that resolves. Calls are multiplexed: any number may be in flight at once.
 * onGoaway and onClose report the server's GOAWAY and the end of the
 * connection.
 */
export class CalcWebSocketConnection {
  /** Called when the server sends GOAWAY, with the ids of the calls it failed. */
  onGoaway: ((g: Goaway & { failedIds: number[] }) => void) | undefined;
  /** Called once when the connection ends, with why (undefined: close() after the last call). */
  onClose: ((err: CalcError | undefined) => void) | undefined;

  private readonly conn: Connection;

  private constructor(socket: WebSocketLike, url: string, options: WebSocketConnectionOptions) {
    this.conn = new Connection(
      options,
      { peerName: url },
      { onGoaway: (g: GoawayInfo) => this.onGoaway?.(g), onClose: (err) => this.onClose?.(err) },
    );
    this.conn.attach(new MessageStream(socket, this.conn, url));
  }

  /**
   * Opens a WebSocket to url (ws:// or wss://, calcd's HTTP port and /ws)
   * with the subprotocol calc.v1, sends the preface and waits for the
   * server's SETTINGS. Rejects with a CalcError: UNAVAILABLE if the
   * WebSocket cannot be opened (browsers do not tell why: an unreachable
   * server, a refused origin and a refused subprotocol look alike), or the
   * GOAWAY's code if the server refuses the connection (e.g.
   * RESOURCE_EXHAUSTED past its connection limits).
   */
  static async connect(url: string, options: WebSocketConnectionOptions = {}): Promise<CalcWebSocketConnection> {
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      throw new CalcError("no WebSocket implementation: pass options.WebSocket (in Node 20, WebSocket from the ws package)", Code.FailedPrecondition);
    }
    let socket: WebSocketLike;
    try {
      socket = new WS(url, [SUBPROTOCOL]);
    } catch (e) {
      throw new CalcError(`cannot open a WebSocket to ${url}: ${(e as Error).message}`, Code.InvalidArgument, { cause: e });
    }
    socket.binaryType = "arraybuffer";
    const c = new CalcWebSocketConnection(socket, url, options);
    await c.conn.handshake(options.connectTimeoutMs ?? 10_000);
    return c;
  }

  /** The server's settings (the defaults until its SETTINGS frame arrives). */
  get settings(): Readonly<Settings> {
    return this.conn.settings;
  }

  /** The GOAWAY the server sent, if any. */
  get goaway(): Goaway | undefined {
    return this.conn.goaway;
  }

  /** True while new calls can be started on this connection. */
  get isOpen(): boolean {
    return this.conn.isOpen;
  }

  /** Number of calls in flight. */
  get inFlight(): number {
    return this.conn.inFlight;
  }

  /**
   * Calls a unary method ("/calculator.v1.CalculatorService/Calculate") with
   * an encoded request; resolves with the encoded response or rejects with a
   * CalcError.
   */
  unary(method: string, request: Uint8Array, options: WebSocketCallOptions = {}): Promise<Uint8Array> {
    return this.conn.unary(method, request, options);
  }

  /**
   * Opens a streaming call. Send with stream.send(), end the sending side
   * with stream.closeSend(), read with for await. Errors (including a failure
   * to start the call) surface when reading and in stream.status.
   */
  stream(method: string, options: WebSocketCallOptions = {}): WebSocketStream {
    const s = new WebSocketStream(method);
    this.conn.openStream(s, options);
    return s;
  }

  /** Sends a PING and resolves with the round-trip time in milliseconds. */
  ping(payload?: Uint8Array): Promise<number> {
    return this.conn.ping(payload);
  }

  /**
   * Closes gracefully: new calls fail with UNAVAILABLE, calls in flight run
   * to their end, then the WebSocket is closed. Resolves when it is.
   */
  close(): Promise<void> {
    return this.conn.close();
  }

  /** Closes now: every call in flight fails with UNAVAILABLE (or err). */
  destroy(err?: CalcError): void {
    this.conn.shutdown(err ?? unavailable("connection closed by the client"));
  }

  /** @internal Sends one message on a streaming call. */
  _send(call: CallState, msg: Uint8Array): Promise<void> {
    return this.conn.send(call, msg);
  }

  /** @internal Sends HALF_CLOSE on a streaming call. */
  _closeSend(call: CallState): void {
    this.conn.closeSend(call);
  }

  /**
   * @internal Cancels a call: sends CANCEL and waits (up to cancelGraceMs)
   * for the server's final answer, normally STATUS CANCELLED.
   */
  cancelCall(call: CallState): void {
    this.conn.cancelCall(call);
  }
}

/**
 * A streaming call on a CalcWebSocketConnection. Read the server's messages
 * with `for await (const msg of stream)`: iteration ends when the server ends
 * the call with OK and throws a CalcError otherwise. Server messages are
 * buffered as they arrive, so writing without reading never stalls the
 * connection.
 */
export class WebSocketStream extends CallStream {}

/** The URL without its query (which may hold secrets), for messages. */
function withoutQuery(u: string): string {
  const q = u.indexOf("?");
  return q < 0 ? u : u.slice(0, q);
}
