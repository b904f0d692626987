// CalcTcpConnection: one raw TCP connection to calcd (PROTOCOL.md), with many
// calls in flight paired by id, unary calls as promises, streaming calls as
// async iterables, AbortSignal cancellation, deadlines, metadata, snappy
// compression, ping/pong keepalive and GOAWAY handling. It runs over TCP or
// TLS (dial.ts), or over any connected Duplex that carries the protocol's
// bytes (CalcTcpConnection.open). The protocol itself is src/core's
// Connection; this file adapts a Node Duplex to it (SocketStream).

import { EventEmitter } from "node:events";
import * as net from "node:net";
import type { Duplex } from "node:stream";
import * as tls from "node:tls";
import { Code } from "@connectrpc/connect";
import { CalcError } from "../errors.js";
import { bearer, checkToken, loadTls, tlsEnabled, type SecurityOptions } from "../security.js";
import { Connection, unavailable, type ByteStream, type CallOptions, type CallState, type ConnectionOptions } from "../core/connection.js";
import { CallStream } from "../core/stream.js";
import type { Goaway, Settings } from "../wire/control.js";
import { connectionError, formatEndpoint, socketDialer } from "./dial.js";
import { nativeSnappy } from "./snappy.js";

export type { CallStatus, GoawayInfo } from "../core/connection.js";
export { toMetadataEntries, type MetadataInit } from "../core/metadata.js";

/**
 * Options of a connection. The TLS options (tls, tlsCa, tlsCert, tlsKey,
 * tlsServerName) and token are those of security.ts: TLS 1.3 with ALPN
 * calc/1, and "authorization: Bearer <token>" on every call (unless the
 * call's own metadata has an authorization key).
 */
export interface TcpConnectionOptions extends SecurityOptions, ConnectionOptions {
  /** Time allowed for the TCP connect, the TLS handshake and the server's SETTINGS. Default 10 s. */
  connectTimeoutMs?: number;
}

/** Options of one call. */
export interface TcpCallOptions extends CallOptions {}

/** The byte stream a connection runs over: a Duplex; sockets can also be (un)referenced. */
type Carrier = Duplex & { ref?: () => unknown; unref?: () => unknown };

const utf8 = new TextEncoder();

/** Frames in Buffers from Node's pool: socket.write takes them as they are. */
const allocFrame = (size: number): Uint8Array => Buffer.allocUnsafe(size);

/**
 * Parses "host:port" ("[::1]:4000" for IPv6) into host and port.
 */
export function parseAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address);
  if (!m) {
    throw new TypeError(`address ${JSON.stringify(address)} is not HOST:PORT`);
  }
  return { host: m[1] ?? (m[2] || "127.0.0.1"), port: Number(m[3]) };
}

/**
 * A Node Duplex (net.Socket, tls.TLSSocket, ...) as a connection's
 * ByteStream: frames written in one tick go out in one write (cork until
 * the next tick), and an idle connection does not keep the process alive.
 */
class SocketStream implements ByteStream {
  private corked = false;
  readonly closed: Promise<void>;

  constructor(
    private readonly socket: Carrier,
    conn: Connection,
    peer: string,
    tlsServerName: string | undefined,
  ) {
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("data", (chunk: Buffer) => conn.receive(chunk));
    socket.on("end", () => conn.peerClosed("connection closed by the server"));
    socket.on("error", (e) => {
      // Over TLS 1.3 the server checks the client's certificate after the
      // client's handshake is done: its alert arrives here, before SETTINGS.
      conn.shutdown(
        conn.isConnecting
          ? connectionError(e, peer, { tls: socket instanceof tls.TLSSocket ? { serverName: tlsServerName } : undefined, handshake: true })
          : new CalcError(`connection error: ${e.message}`, Code.Unavailable, { cause: e }),
      );
    });
    socket.on("close", () => conn.shutdown(unavailable("connection closed")));
  }

  write(bytes: Uint8Array): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(bytes);
  }

  writable(): Promise<void> | undefined {
    const socket = this.socket;
    if (!socket.writableNeedDrain) {
      return undefined;
    }
    return new Promise<void>((resolve) => {
      const done = () => {
        socket.off("drain", done);
        socket.off("close", done);
        resolve();
      };
      socket.on("drain", done);
      socket.on("close", done);
    });
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /**
   * An idle connection (no call or ping in flight) does not keep the process
   * alive, like an idle gRPC channel: a script that forgets close() still exits.
   */
  setBusy(busy: boolean): void {
    if (busy) {
      this.socket.ref?.();
    } else {
      this.socket.unref?.();
    }
  }
}

/**
 * One connection to calcd's raw TCP port. Create it with
 * CalcTcpConnection.connect(); it is ready (SETTINGS received) when that
 * resolves. Calls are multiplexed: any number may be in flight at once.
 *
 * Events: 'goaway' (GoawayInfo), 'close' (CalcError | undefined).
 */
export class CalcTcpConnection extends EventEmitter {
  private readonly socket: Carrier;
  private readonly conn: Connection;

  private constructor(socket: Carrier, options: TcpConnectionOptions, peer: string | undefined) {
    super();
    this.socket = socket;
    this.conn = new Connection(
      options,
      {
        peerName: "the server",
        authorization: options.token ? ["authorization", utf8.encode(bearer(options.token))] : undefined,
        snappy: nativeSnappy,
        alloc: allocFrame,
      },
      { onGoaway: (g) => this.emit("goaway", g), onClose: (err) => this.emit("close", err) },
    );
    // The address dialled, else the socket's peer: a socket reset while
    // connecting has no remote address any more.
    peer ??= socket instanceof net.Socket && socket.remoteAddress ? formatEndpoint({ host: socket.remoteAddress, port: socket.remotePort ?? 0 }) : "the server";
    this.conn.attach(new SocketStream(socket, this.conn, peer, options.tlsServerName));
  }

  /**
   * Connects to address ("host:port" or {host, port}), over TLS if a tls*
   * option is set, sends the preface and waits for the server's SETTINGS.
   * Rejects with a CalcError: INVALID_ARGUMENT for a token that would go in
   * plaintext to a host that is not loopback (before connecting) or an
   * unreadable TLS file; UNAVAILABLE if the server cannot be reached or the
   * TLS handshake fails (the message says why: an unknown CA, a name the
   * certificate does not hold, a client certificate the server requires or
   * refused, no ALPN calc/1, a plaintext port); the GOAWAY's code if the
   * server refuses the connection (e.g. RESOURCE_EXHAUSTED past its max
   * connections, UNAVAILABLE "this port requires TLS" for plaintext to a TLS
   * port).
   */
  static async connect(address: string | { host: string; port: number }, options: TcpConnectionOptions = {}): Promise<CalcTcpConnection> {
    const endpoint = typeof address === "string" ? parseAddress(address) : address;
    checkToken(options.token, tlsEnabled(options), endpoint.host);
    const dial = socketDialer(loadTls(options));
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    const started = performance.now();
    const socket = await dial(endpoint, { timeoutMs });
    return CalcTcpConnection.open(socket, { ...options, connectTimeoutMs: Math.max(1, timeoutMs - (performance.now() - started)) }, formatEndpoint(endpoint));
  }

  /**
   * Runs the protocol over socket, a connected byte stream (a net.Socket, a
   * tls.TLSSocket after its handshake, or any Duplex carrying the same
   * bytes): sends the preface and waits for the server's SETTINGS, within
   * options.connectTimeoutMs (10 s). A token over a plaintext net.Socket to
   * a peer that is not loopback is refused; over other carriers the caller
   * decides. The TLS options are not used here: the socket is given. peer
   * names the server in errors (default: the socket's remote address).
   */
  static async open(socket: Duplex, options: TcpConnectionOptions = {}, peer?: string): Promise<CalcTcpConnection> {
    if (socket instanceof net.Socket && !(socket instanceof tls.TLSSocket)) {
      try {
        checkToken(options.token, false, socket.remoteAddress ?? "");
      } catch (e) {
        socket.destroy();
        throw e;
      }
    }
    const c = new CalcTcpConnection(socket, options, peer);
    const ready = c.conn.handshake(options.connectTimeoutMs ?? 10_000);
    c.conn.begin();
    await ready;
    return c;
  }

  /** The server's settings (the defaults until its SETTINGS frame arrives). */
  get settings(): Readonly<Settings> {
    return this.conn.settings;
  }

  /**
   * Over TLS, what was negotiated: the protocol version ("TLSv1.3"), the
   * ALPN protocol ("calc/1") and whether the server's certificate was
   * verified; undefined for a plaintext connection.
   */
  get tls(): { protocol: string | null; alpnProtocol: string | false | null; authorized: boolean } | undefined {
    const s = this.socket;
    if (!(s instanceof tls.TLSSocket)) {
      return undefined;
    }
    return { protocol: s.getProtocol(), alpnProtocol: s.alpnProtocol, authorized: s.authorized };
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
  unary(method: string, request: Uint8Array, options: TcpCallOptions = {}): Promise<Uint8Array> {
    return this.conn.unary(method, request, options);
  }

  /**
   * Opens a streaming call. Send with stream.send(), end the sending side
   * with stream.closeSend(), read with for await. Errors (including a failure
   * to start the call) surface when reading and in stream.status.
   */
  stream(method: string, options: TcpCallOptions = {}): TcpStream {
    const s = new TcpStream(method);
    this.conn.openStream(s, options);
    return s;
  }

  /** Sends a PING and resolves with the round-trip time in milliseconds. */
  ping(payload?: Uint8Array): Promise<number> {
    return this.conn.ping(payload);
  }

  /**
   * Closes gracefully: new calls fail with UNAVAILABLE, calls in flight run
   * to their end, then the socket is closed. Resolves when it is.
   */
  close(): Promise<void> {
    return this.conn.close();
  }

  /** Closes now: every call in flight fails with UNAVAILABLE (or err). */
  destroy(err?: CalcError): void {
    this.conn.shutdown(err ?? unavailable("connection closed by the client"));
  }

  /** Sends one message on a streaming call. */
  _send(call: CallState, msg: Uint8Array): Promise<void> {
    return this.conn.send(call, msg);
  }

  /** Sends HALF_CLOSE on a streaming call. */
  _closeSend(call: CallState): void {
    this.conn.closeSend(call);
  }

  /**
   * Cancels a call: sends CANCEL and waits (up to cancelGraceMs) for the
   * server's final answer, normally STATUS CANCELLED.
   */
  cancelCall(call: CallState): void {
    this.conn.cancelCall(call);
  }
}

/**
 * A streaming call on a CalcTcpConnection. Read the server's messages with
 * `for await (const msg of stream)`: iteration ends when the server ends the
 * call with OK and throws a CalcError otherwise. Server messages are buffered
 * as they arrive, so writing without reading never stalls the connection.
 */
export class TcpStream extends CallStream {}
