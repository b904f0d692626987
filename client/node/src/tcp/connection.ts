// CalcTcpConnection: one raw TCP connection to calcd (PROTOCOL.md), with many
// calls in flight paired by id, unary calls as promises, streaming calls as
// async iterables, AbortSignal cancellation, deadlines, metadata, snappy
// compression, ping/pong keepalive and GOAWAY handling. It runs over TCP or
// TLS (dial.ts), or over any connected Duplex that carries the protocol's
// bytes (CalcTcpConnection.open).

import { EventEmitter } from "node:events";
import * as net from "node:net";
import type { Duplex } from "node:stream";
import * as tls from "node:tls";
import { Code } from "@connectrpc/connect";
import { CalcError } from "../errors.js";
import { bearer, checkToken, loadTls, tlsEnabled, type SecurityOptions } from "../security.js";
import { connectionError, formatEndpoint, socketDialer } from "./dial.js";
import {
  checkPingPayload,
  decodeGoaway,
  decodeSettings,
  decodeStatus,
  DEFAULT_SETTINGS,
  type Goaway,
  type RpcStatus,
  type Settings,
} from "../wire/control.js";
import {
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_MAX_MESSAGE_SIZE,
  encodeFrame,
  FRAME_OVERHEAD,
  FrameDecoder,
  FrameKind,
  hex,
  kindName,
  PREFACE,
  WireError,
  type Frame,
} from "../wire/frame.js";
import { encodeRequestPayload, MAX_BOUND_REFS, MAX_METHOD_REF, type MetadataEntry } from "../wire/header.js";
import { decodeMessage, encodeMessage } from "../wire/message.js";

/**
 * Options of a connection. The TLS options (tls, tlsCa, tlsCert, tlsKey,
 * tlsServerName) and token are those of security.ts: TLS 1.3 with ALPN
 * calc/1, and "authorization: Bearer <token>" on every call (unless the
 * call's own metadata has an authorization key).
 */
export interface TcpConnectionOptions extends SecurityOptions {
  /** Time allowed for the TCP connect, the TLS handshake and the server's SETTINGS. Default 10 s. */
  connectTimeoutMs?: number;
  /** Largest frame length this client accepts. Default 4,210,688. */
  maxFrameSize?: number;
  /** Largest message (after decompression) this client accepts. Default 4 MiB. */
  maxMessageSize?: number;
  /**
   * Message size at and above which this client compresses what it sends.
   * Default: the server's COMPRESS_THRESHOLD setting (256). 0 disables.
   */
  compressThreshold?: number;
  /**
   * Interval of keepalive PINGs. Default: half the server's
   * IDLE_TIMEOUT_MILLIS (never if that is 0). false disables keepalive.
   */
  keepaliveMs?: number | false;
  /**
   * After a cancel, how long to wait for the server's final STATUS (normally
   * CANCELLED) before failing the call locally with CANCELLED. Default 2 s.
   */
  cancelGraceMs?: number;
}

/**
 * Metadata for a call. Keys are lower-cased. Values of keys ending in "-bin"
 * are binary: pass a Uint8Array, or a string holding base64 (as gRPC's HTTP/2
 * headers and connect's encodeBinaryHeader do).
 */
export type MetadataInit =
  | Record<string, string | Uint8Array | ReadonlyArray<string | Uint8Array>>
  | Iterable<readonly [string, string | Uint8Array]>
  | Headers;

/** Options of one call. */
export interface TcpCallOptions {
  /** Deadline, in milliseconds from now: sent as the deadline budget and enforced locally. */
  timeoutMs?: number;
  /** Aborting cancels the call (a CANCEL frame); it then ends with CANCELLED. */
  signal?: AbortSignal;
  /** Call metadata, seen by the server as gRPC metadata. */
  metadata?: MetadataInit;
}

/** The final status of a call, with where it came from. */
export interface CallStatus extends RpcStatus {
  source: "server" | "client";
}

/** What a GOAWAY said, as the 'goaway' event reports it. */
export interface GoawayInfo extends Goaway {
  /** Ids of the in-flight calls it failed (above lastId): safe to retry. */
  failedIds: number[];
}

type ConnState = "connecting" | "open" | "draining" | "closed";

/** The byte stream a connection runs over: a Duplex; sockets can also be (un)referenced. */
type Carrier = Duplex & { ref?: () => unknown; unref?: () => unknown };

const utf8 = new TextEncoder();
const EMPTY = new Uint8Array(0);

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
 * One connection to calcd's raw TCP port. Create it with
 * CalcTcpConnection.connect(); it is ready (SETTINGS received) when that
 * resolves. Calls are multiplexed: any number may be in flight at once.
 *
 * Events: 'goaway' (GoawayInfo), 'close' (CalcError | undefined).
 */
export class CalcTcpConnection extends EventEmitter {
  private readonly socket: Carrier;
  private readonly decoder: FrameDecoder;
  private readonly maxMessageSize: number;
  private readonly cancelGraceMs: number;
  private readonly calls = new Map<number, CallState>();
  private readonly refs = new Map<string, MethodRef>();
  private readonly pings = new Map<string, { sent: number; resolve: (rtt: number) => void; reject: (e: Error) => void }>();
  private state: ConnState = "connecting";
  private serverSettings: Settings = { ...DEFAULT_SETTINGS };
  private nextId = 1;
  private nextPing = 0;
  private corked = false;
  private keepalive: NodeJS.Timeout | undefined;
  private keepaliveOutstanding: string | undefined;
  private goawayInfo: Goaway | undefined;
  private closeError: CalcError | undefined;
  private readonly closed: Promise<void>;
  private readonly authorization: [string, Uint8Array] | undefined;
  /** The peer, for messages: HOST:PORT of a socket. */
  private readonly peer: string;

  private constructor(
    socket: Carrier,
    private readonly options: TcpConnectionOptions,
  ) {
    super();
    this.socket = socket;
    this.peer = socket instanceof net.Socket && socket.remoteAddress ? formatEndpoint({ host: socket.remoteAddress, port: socket.remotePort ?? 0 }) : "the server";
    this.authorization = options.token ? ["authorization", utf8.encode(bearer(options.token))] : undefined;
    this.decoder = new FrameDecoder(options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE);
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.cancelGraceMs = options.cancelGraceMs ?? 2000;
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
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
    return CalcTcpConnection.open(socket, { ...options, connectTimeoutMs: Math.max(1, timeoutMs - (performance.now() - started)) });
  }

  /**
   * Runs the protocol over socket, a connected byte stream (a net.Socket, a
   * tls.TLSSocket after its handshake, or any Duplex carrying the same
   * bytes): sends the preface and waits for the server's SETTINGS, within
   * options.connectTimeoutMs (10 s). A token over a plaintext net.Socket to
   * a peer that is not loopback is refused; over other carriers the caller
   * decides. The TLS options are not used here: the socket is given.
   */
  static open(socket: Duplex, options: TcpConnectionOptions = {}): Promise<CalcTcpConnection> {
    if (socket instanceof net.Socket && !(socket instanceof tls.TLSSocket)) {
      try {
        checkToken(options.token, false, socket.remoteAddress ?? "");
      } catch (e) {
        socket.destroy();
        return Promise.reject(e);
      }
    }
    const conn = new CalcTcpConnection(socket, options);
    return conn.handshake(options.connectTimeoutMs ?? 10_000);
  }

  /** The server's settings (the defaults until its SETTINGS frame arrives). */
  get settings(): Readonly<Settings> {
    return this.serverSettings;
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
    return this.goawayInfo;
  }

  /** True while new calls can be started on this connection. */
  get isOpen(): boolean {
    return this.state === "open";
  }

  /** Number of calls in flight. */
  get inFlight(): number {
    return this.calls.size;
  }

  /**
   * Calls a unary method ("/calculator.v1.CalculatorService/Calculate") with
   * an encoded request; resolves with the encoded response or rejects with a
   * CalcError.
   */
  unary(method: string, request: Uint8Array, options: TcpCallOptions = {}): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      this.startCall(method, options, false, request, {
        onMessage: resolve,
        onEnd: (err) => {
          if (err) {
            reject(err);
          }
        },
      });
    });
  }

  /**
   * Opens a streaming call. Send with stream.send(), end the sending side
   * with stream.closeSend(), read with for await. Errors (including a failure
   * to start the call) surface when reading and in stream.status.
   */
  stream(method: string, options: TcpCallOptions = {}): TcpStream {
    const s = new TcpStream(this, method);
    const call = this.startCall(method, options, true, undefined, {
      onMessage: (m) => s._push(m),
      onEnd: (err, status) => s._end(err, status),
    });
    s._attach(call);
    return s;
  }

  /** Sends a PING and resolves with the round-trip time in milliseconds. */
  ping(payload?: Uint8Array): Promise<number> {
    if (this.state === "closed") {
      return Promise.reject(this.closeError ?? unavailable("connection closed"));
    }
    let data = payload;
    if (data === undefined) {
      data = new Uint8Array(8);
      new DataView(data.buffer).setBigUint64(0, BigInt(++this.nextPing));
    }
    checkPingPayload(data);
    const key = hex(data);
    return new Promise<number>((resolve, reject) => {
      this.pings.set(key, { sent: performance.now(), resolve, reject });
      this.updateRef();
      this.write(encodeFrame(FrameKind.PING, 0, 0, data));
    });
  }

  /**
   * Closes gracefully: new calls fail with UNAVAILABLE, calls in flight run
   * to their end, then the socket is closed. Resolves when it is.
   */
  close(): Promise<void> {
    if (this.state === "open" || this.state === "connecting") {
      this.state = "draining";
    }
    this.maybeEndDraining();
    return this.closed;
  }

  /** Closes now: every call in flight fails with UNAVAILABLE (or err). */
  destroy(err?: CalcError): void {
    this.shutdown(err ?? unavailable("connection closed by the client"));
  }

  // ---- connection lifecycle ----

  private handshake(timeoutMs: number): Promise<CalcTcpConnection> {
    return new Promise<CalcTcpConnection>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.shutdown(new CalcError(`no SETTINGS from the server within ${timeoutMs} ms`, Code.Unavailable, { safeToRetry: true }));
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        this.off("close", onFail);
        resolve(this);
      };
      const onFail = (err?: CalcError) => {
        clearTimeout(timer);
        this.off("_ready", onReady);
        reject(err ?? unavailable("connection closed during the handshake"));
      };
      this.once("_ready", onReady);
      this.once("close", onFail);
      this.socket.on("data", (chunk: Buffer) => this.onData(chunk));
      this.socket.on("end", () => this.onEnd());
      this.socket.on("error", (e) => {
        // Over TLS 1.3 the server checks the client's certificate after the
        // client's handshake is done: its alert arrives here, before SETTINGS.
        this.shutdown(
          this.state === "connecting"
            ? connectionError(e, this.peer, {
                tls: this.socket instanceof tls.TLSSocket ? { serverName: this.options.tlsServerName } : undefined,
                handshake: true,
              })
            : new CalcError(`connection error: ${e.message}`, Code.Unavailable, { cause: e }),
        );
      });
      this.socket.on("close", () => this.shutdown(this.closeError ?? unavailable("connection closed")));
      this.socket.write(PREFACE);
    });
  }

  private onData(chunk: Buffer): void {
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      const done = (e as { frames?: Frame[] }).frames ?? [];
      for (const f of done) {
        this.onFrame(f);
      }
      this.protocolError(e instanceof WireError ? e.message : String(e));
      return;
    }
    for (const f of frames) {
      if (this.state === "closed") {
        return;
      }
      this.onFrame(f);
    }
  }

  private onEnd(): void {
    try {
      this.decoder.end();
    } catch (e) {
      this.shutdown(unavailable(`connection closed by the server mid-frame (${(e as Error).message})`));
      return;
    }
    const g = this.goawayInfo;
    this.shutdown(
      g
        ? unavailable(`connection closed by the server after GOAWAY (${g.status.code}: ${g.status.message})`)
        : unavailable("connection closed by the server"),
    );
  }

  private protocolError(why: string): void {
    this.shutdown(new CalcError(`protocol error from the server: ${why}`, Code.Internal));
  }

  /** Fails every call and pending ping with err and closes the socket. */
  private shutdown(err: CalcError): void {
    if (this.state === "closed") {
      return;
    }
    this.state = "closed";
    this.closeError = err;
    if (this.keepalive) {
      clearInterval(this.keepalive);
    }
    for (const call of [...this.calls.values()]) {
      this.finish(call, err);
    }
    for (const p of this.pings.values()) {
      p.reject(err);
    }
    this.pings.clear();
    this.socket.destroy();
    this.emit("close", err);
  }

  /**
   * An idle connection (no call or ping in flight) does not keep the process
   * alive, like an idle gRPC channel: a script that forgets close() still exits.
   */
  private updateRef(): void {
    if (this.state === "closed") {
      return;
    }
    if (this.calls.size === 0 && this.pings.size === 0 && this.state === "open") {
      this.socket.unref?.();
    } else {
      this.socket.ref?.();
    }
  }

  private maybeEndDraining(): void {
    this.updateRef();
    if (this.state === "draining" && this.calls.size === 0) {
      this.socket.end();
    }
  }

  private startKeepalive(): void {
    const ms = this.options.keepaliveMs ?? (this.serverSettings.IDLE_TIMEOUT_MILLIS > 0 ? this.serverSettings.IDLE_TIMEOUT_MILLIS / 2 : 0);
    if (ms === false || ms <= 0 || this.keepalive) {
      return;
    }
    this.keepalive = setInterval(() => {
      if (this.keepaliveOutstanding !== undefined && this.pings.has(this.keepaliveOutstanding)) {
        this.shutdown(unavailable(`keepalive PING unanswered for ${ms} ms`));
        return;
      }
      const data = new Uint8Array(8);
      new DataView(data.buffer).setBigUint64(0, BigInt(++this.nextPing));
      this.keepaliveOutstanding = hex(data);
      this.ping(data).catch(() => {});
    }, ms);
    this.keepalive.unref();
  }

  // ---- frames from the server ----

  private onFrame(f: Frame): void {
    if (this.state === "connecting" && f.kind !== FrameKind.SETTINGS && f.kind !== FrameKind.GOAWAY) {
      this.protocolError(`first frame is ${kindName(f.kind)}, not SETTINGS`);
      return;
    }
    try {
      switch (f.kind) {
        case FrameKind.SETTINGS:
          this.onSettings(f);
          return;
        case FrameKind.RESPONSE:
        case FrameKind.MESSAGE:
          this.onMessageFrame(f);
          return;
        case FrameKind.STATUS:
          this.onStatus(f);
          return;
        case FrameKind.PING:
          this.connectionFrame(f);
          this.write(encodeFrame(FrameKind.PONG, 0, 0, checkPingPayload(f.payload)));
          return;
        case FrameKind.PONG:
          this.onPong(f);
          return;
        case FrameKind.GOAWAY:
          this.onGoaway(f);
          return;
        default:
          this.protocolError(`${kindName(f.kind)} is a client-only frame`);
      }
    } catch (e) {
      this.protocolError(e instanceof WireError ? e.message : String(e));
    }
  }

  private connectionFrame(f: Frame): void {
    if (f.id !== 0) {
      throw new WireError("BAD_PAYLOAD", `${kindName(f.kind)} with call id ${f.id}`);
    }
  }

  private onSettings(f: Frame): void {
    this.connectionFrame(f);
    this.serverSettings = decodeSettings(f.payload).settings;
    if (this.state === "connecting") {
      this.state = "open";
      this.startKeepalive();
      this.updateRef();
      this.emit("_ready");
    }
  }

  private onMessageFrame(f: Frame): void {
    const call = this.calls.get(f.id);
    if (!call) {
      return; // the call ended locally (deadline, cancel): late frames are dropped
    }
    const unary = f.kind === FrameKind.RESPONSE;
    if (unary === call.streaming) {
      this.failCall(call, new CalcError(`protocol error: ${kindName(f.kind)} on a ${call.streaming ? "streaming" : "unary"} call`, Code.Internal));
      return;
    }
    let msg: Uint8Array;
    try {
      msg = decodeMessage(f.payload, f.flags, this.maxMessageSize);
    } catch (e) {
      const we = e as WireError;
      const code = we.code === "MESSAGE_TOO_LARGE" ? Code.ResourceExhausted : Code.Internal;
      this.failCall(call, new CalcError(`response message: ${we.message}`, code), !unary);
      return;
    }
    call.ref.confirmed = true;
    call.handlers.onMessage(msg);
    if (unary) {
      this.finish(call, undefined, { code: 0, message: "", details: [], source: "server" });
    }
  }

  private onStatus(f: Frame): void {
    const call = this.calls.get(f.id);
    if (!call) {
      return;
    }
    let st: RpcStatus;
    try {
      st = decodeStatus(f.payload);
    } catch (e) {
      this.finish(call, new CalcError(`protocol error: ${(e as Error).message}`, Code.Internal));
      return;
    }
    if (st.code === 0) {
      call.ref.confirmed = true;
      if (!call.streaming) {
        this.finish(call, new CalcError("protocol error: unary call ended with status OK and no RESPONSE", Code.Internal));
        return;
      }
      this.finish(call, undefined, { ...st, source: "server" });
      return;
    }
    if (st.code === Code.Unimplemented || st.code === Code.InvalidArgument) {
      // The binding may not have taken (unknown name, malformed header):
      // send the name again until a call proves it. Rebinding a ref to the
      // same name is allowed.
      if (call.sentName && !call.ref.confirmed) {
        call.ref.needsName = true;
      }
    } else {
      call.ref.confirmed = true;
    }
    this.finish(call, CalcError.fromStatus(st), { ...st, source: "server" });
  }

  private onPong(f: Frame): void {
    this.connectionFrame(f);
    const key = hex(f.payload);
    const p = this.pings.get(key);
    if (p) {
      this.pings.delete(key);
      this.updateRef();
      p.resolve(performance.now() - p.sent);
    }
  }

  private onGoaway(f: Frame): void {
    this.connectionFrame(f);
    const g = decodeGoaway(f.payload);
    this.goawayInfo = g;
    const why = g.status.code === 0 ? `server going away: ${g.status.message}` : `server sent GOAWAY (${g.status.code}): ${g.status.message}`;
    if (this.state === "connecting") {
      // Refused before SETTINGS: report the server's reason.
      const err = g.status.code !== 0 ? CalcError.fromStatus(g.status, { safeToRetry: true }) : unavailable(why, true);
      this.shutdown(err);
      return;
    }
    if (this.state === "open") {
      this.state = "draining";
    }
    const failedIds: number[] = [];
    for (const call of [...this.calls.values()]) {
      if (call.id > g.lastId) {
        failedIds.push(call.id);
        this.finish(
          call,
          new CalcError(`${why}; call ${call.id} was not processed (last accepted id ${g.lastId}): safe to retry`, Code.Unavailable, {
            safeToRetry: true,
            source: "server",
          }),
        );
      }
    }
    this.emit("goaway", { ...g, failedIds } satisfies GoawayInfo);
    this.maybeEndDraining();
  }

  // ---- calls ----

  private startCall(method: string, options: TcpCallOptions, streaming: boolean, request: Uint8Array | undefined, handlers: CallHandlers): CallState {
    const call: CallState = {
      id: 0,
      method,
      streaming,
      handlers,
      ref: { ref: 0, needsName: true, confirmed: false },
      sentName: false,
      done: false,
      halfClosed: false,
      cancelSent: false,
    };
    const fail = (err: CalcError) => {
      call.done = true;
      call.error = err;
      queueMicrotask(() => handlers.onEnd(err, { code: err.code, message: err.rawMessage, details: [], source: "client" }));
      return call;
    };
    if (this.state !== "open") {
      const g = this.goawayInfo;
      const why = g ? `server sent GOAWAY (${g.status.code}: ${g.status.message})` : this.state === "closed" ? "connection closed" : "connection closing";
      return fail(new CalcError(`${why}: no new calls on this connection`, Code.Unavailable, { safeToRetry: true, cause: this.closeError }));
    }
    if (options.signal?.aborted) {
      return fail(new CalcError("call cancelled before it started", Code.Canceled, { safeToRetry: true, cause: options.signal.reason }));
    }
    if (options.timeoutMs !== undefined && options.timeoutMs <= 0) {
      return fail(new CalcError("deadline exceeded before the call started", Code.DeadlineExceeded, { safeToRetry: true }));
    }
    if (this.nextId > 0xffffffff) {
      this.state = "draining";
      this.maybeEndDraining();
      return fail(new CalcError("call ids exhausted on this connection", Code.Unavailable, { safeToRetry: true }));
    }
    let ref = this.refs.get(method);
    if (!ref) {
      if (this.refs.size >= MAX_BOUND_REFS || this.refs.size >= MAX_METHOD_REF) {
        return fail(new CalcError(`more than ${MAX_BOUND_REFS} methods on one connection`, Code.ResourceExhausted, { safeToRetry: true }));
      }
      ref = { ref: this.refs.size + 1, needsName: true, confirmed: false };
      this.refs.set(method, ref);
    }
    call.ref = ref;
    let metadata: MetadataEntry[] | undefined;
    let frame: Buffer;
    try {
      metadata = options.metadata === undefined ? undefined : toMetadataEntries(options.metadata);
      if (this.authorization && !metadata?.some(([k]) => k === "authorization")) {
        metadata = [this.authorization, ...(metadata ?? [])];
      }
      let message: Uint8Array = EMPTY;
      let msgFlags = 0;
      if (request !== undefined) {
        ({ bytes: message, flags: msgFlags } = this.prepareMessage(request));
      }
      call.sentName = ref.needsName;
      const { payload, flags } = encodeRequestPayload(
        {
          methodRef: ref.ref,
          methodName: ref.needsName ? method : undefined,
          timeoutMicros: options.timeoutMs === undefined ? undefined : options.timeoutMs * 1000,
          metadata,
        },
        message,
      );
      frame = this.checkFrame(FrameKind.REQUEST, flags | msgFlags, this.nextId, payload);
    } catch (e) {
      return fail(e instanceof CalcError ? e : new CalcError(String((e as Error).message ?? e), Code.InvalidArgument, { safeToRetry: true }));
    }
    call.id = this.nextId++;
    ref.needsName = false;
    this.calls.set(call.id, call);
    this.updateRef();
    this.write(frame);
    if (options.timeoutMs !== undefined) {
      call.deadlineTimer = setTimeout(() => {
        this.failCall(call, new CalcError(`deadline of ${options.timeoutMs} ms exceeded`, Code.DeadlineExceeded), true);
      }, options.timeoutMs);
    }
    if (options.signal) {
      const signal = options.signal;
      const onAbort = () => this.cancelCall(call);
      signal.addEventListener("abort", onAbort, { once: true });
      call.removeAbort = () => signal.removeEventListener("abort", onAbort);
    }
    return call;
  }

  /** Compresses msg if worthwhile and checks it against the server's limits. */
  private prepareMessage(msg: Uint8Array): { bytes: Uint8Array; flags: number } {
    if (msg.length > this.serverSettings.MAX_MESSAGE_SIZE) {
      throw new CalcError(
        `message of ${msg.length} bytes exceeds the server's max message size ${this.serverSettings.MAX_MESSAGE_SIZE}`,
        Code.ResourceExhausted,
      );
    }
    return encodeMessage(msg, this.options.compressThreshold ?? this.serverSettings.COMPRESS_THRESHOLD);
  }

  /** Encodes a frame after checking it against the server's max frame size. */
  private checkFrame(kind: FrameKind, flags: number, id: number, payload: Uint8Array): Buffer {
    if (FRAME_OVERHEAD - 4 + payload.length > this.serverSettings.MAX_FRAME_SIZE) {
      throw new CalcError(
        `${kindName(kind)} frame of ${payload.length + 6} bytes exceeds the server's max frame size ${this.serverSettings.MAX_FRAME_SIZE}`,
        Code.ResourceExhausted,
      );
    }
    return encodeFrame(kind, flags, id, payload);
  }

  /** Writes a frame; frames written in one tick go out in one write. */
  private write(frame: Uint8Array): boolean {
    if (this.state === "closed") {
      return true;
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    return this.socket.write(frame);
  }

  /** Sends one message on a streaming call. */
  _send(call: CallState, msg: Uint8Array): Promise<void> {
    if (call.done) {
      return Promise.reject(call.error ?? new CalcError("call already ended", Code.FailedPrecondition));
    }
    if (call.halfClosed) {
      return Promise.reject(new CalcError("send after closeSend", Code.FailedPrecondition));
    }
    let frame: Buffer;
    try {
      const { bytes, flags } = this.prepareMessage(msg);
      frame = this.checkFrame(FrameKind.MESSAGE, flags, call.id, bytes);
    } catch (e) {
      const err = e as CalcError;
      this.failCall(call, err, true);
      return Promise.reject(err);
    }
    this.write(frame);
    if (!this.socket.writableNeedDrain) {
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = () => {
        this.socket.off("drain", done);
        this.socket.off("close", done);
        resolve();
      };
      this.socket.on("drain", done);
      this.socket.on("close", done);
    });
  }

  /** Sends HALF_CLOSE on a streaming call. */
  _closeSend(call: CallState): void {
    if (call.done || call.halfClosed) {
      return;
    }
    call.halfClosed = true;
    this.write(encodeFrame(FrameKind.HALF_CLOSE, 0, call.id));
  }

  /**
   * Cancels a call: sends CANCEL and waits (up to cancelGraceMs) for the
   * server's final answer, normally STATUS CANCELLED.
   */
  cancelCall(call: CallState): void {
    if (call.done || call.cancelSent) {
      return;
    }
    call.cancelSent = true;
    this.write(encodeFrame(FrameKind.CANCEL, 0, call.id));
    call.graceTimer = setTimeout(() => {
      this.finish(call, new CalcError(`call cancelled; the server did not answer the CANCEL within ${this.cancelGraceMs} ms`, Code.Canceled));
    }, this.cancelGraceMs);
  }

  /** Ends a call locally with err, telling the server with CANCEL if asked. */
  private failCall(call: CallState, err: CalcError, sendCancel = true): void {
    if (call.done) {
      return;
    }
    if (sendCancel && !call.cancelSent && this.state !== "closed") {
      call.cancelSent = true;
      this.write(encodeFrame(FrameKind.CANCEL, 0, call.id));
    }
    this.finish(call, err);
  }

  private finish(call: CallState, err: CalcError | undefined, status?: CallStatus): void {
    if (call.done) {
      return;
    }
    call.done = true;
    call.error = err;
    clearTimeout(call.deadlineTimer);
    clearTimeout(call.graceTimer);
    call.removeAbort?.();
    this.calls.delete(call.id);
    this.updateRef();
    const st: CallStatus = status ?? {
      code: err?.code ?? 0,
      message: err?.rawMessage ?? "",
      details: [],
      source: err instanceof CalcError ? err.source : "client",
    };
    call.handlers.onEnd(err, st);
    this.maybeEndDraining();
  }
}

interface MethodRef {
  ref: number;
  /** Send METHOD_NAME with the next call. */
  needsName: boolean;
  /** The server has shown it knows the binding. */
  confirmed: boolean;
}

interface CallHandlers {
  onMessage(msg: Uint8Array): void;
  onEnd(err: CalcError | undefined, status: CallStatus): void;
}

/** @internal The state of one call on a connection. */
export interface CallState {
  id: number;
  method: string;
  streaming: boolean;
  handlers: CallHandlers;
  ref: MethodRef;
  sentName: boolean;
  done: boolean;
  halfClosed: boolean;
  cancelSent: boolean;
  error?: CalcError;
  deadlineTimer?: NodeJS.Timeout;
  graceTimer?: NodeJS.Timeout;
  removeAbort?: () => void;
}

/**
 * A streaming call on a CalcTcpConnection. Read the server's messages with
 * `for await (const msg of stream)`: iteration ends when the server ends the
 * call with OK and throws a CalcError otherwise. Server messages are buffered
 * as they arrive, so writing without reading never stalls the connection.
 */
export class TcpStream implements AsyncIterable<Uint8Array> {
  private call: CallState | undefined;
  private readonly queue: Uint8Array[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;
  private error: CalcError | undefined;
  private resolveStatus!: (s: CallStatus) => void;
  /** The call's final status; never rejects. */
  readonly status: Promise<CallStatus>;

  /** @internal */
  constructor(
    private readonly conn: CalcTcpConnection,
    readonly method: string,
  ) {
    this.status = new Promise((resolve) => (this.resolveStatus = resolve));
  }

  /** The call id on its connection (0 if the call could not start). */
  get id(): number {
    return this.call?.id ?? 0;
  }

  /** @internal */
  _attach(call: CallState): void {
    this.call = call;
  }

  /** @internal */
  _push(msg: Uint8Array): void {
    this.queue.push(msg);
    this.wake();
  }

  /** @internal */
  _end(err: CalcError | undefined, status: CallStatus): void {
    this.ended = true;
    this.error = err;
    this.resolveStatus(status);
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  /** Sends a message; resolves when the socket can take more. */
  send(msg: Uint8Array): Promise<void> {
    if (!this.call || this.ended) {
      return Promise.reject(this.error ?? new CalcError("call already ended", Code.FailedPrecondition));
    }
    return (this.conn as unknown as ConnInternals)._send(this.call, msg);
  }

  /** Ends the sending side (HALF_CLOSE). */
  closeSend(): void {
    if (this.call) {
      (this.conn as unknown as ConnInternals)._closeSend(this.call);
    }
  }

  /** Cancels the call (CANCEL): it ends with CANCELLED unless it already finished. */
  cancel(): void {
    if (this.call) {
      this.conn.cancelCall(this.call);
    }
  }

  /** True once the call has ended. */
  get done(): boolean {
    return this.ended;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    let completed = false;
    try {
      for (;;) {
        if (this.queue.length > 0) {
          yield this.queue.shift()!;
          continue;
        }
        if (this.ended) {
          completed = true;
          if (this.error) {
            throw this.error;
          }
          return;
        }
        await new Promise<void>((resolve) => (this.waiter = resolve));
      }
    } finally {
      if (!completed && !this.ended) {
        // The reader gave up early (break / return): nobody wants the rest.
        this.cancel();
      }
    }
  }
}

interface ConnInternals {
  _send(call: CallState, msg: Uint8Array): Promise<void>;
  _closeSend(call: CallState): void;
}

function unavailable(message: string, safeToRetry = false): CalcError {
  return new CalcError(message, Code.Unavailable, { safeToRetry });
}

/** Converts call metadata to wire entries: lower-case keys, binary values. */
export function toMetadataEntries(md: MetadataInit): MetadataEntry[] {
  const out: MetadataEntry[] = [];
  const add = (k: string, v: string | Uint8Array) => {
    const key = k.toLowerCase();
    if (!/^[0-9a-z_.-]+$/.test(key)) {
      throw new CalcError(`metadata key ${JSON.stringify(k)} is not lower-case ASCII (0-9 a-z _ . -)`, Code.InvalidArgument);
    }
    let value: Uint8Array;
    if (typeof v !== "string") {
      value = v;
    } else if (key.endsWith("-bin")) {
      value = new Uint8Array(Buffer.from(v, "base64"));
    } else {
      value = utf8.encode(v);
    }
    out.push([key, value]);
  };
  if (typeof Headers !== "undefined" && md instanceof Headers) {
    md.forEach((v, k) => {
      for (const part of k.endsWith("-bin") ? v.split(/,\s*/) : [v]) {
        add(k, part);
      }
    });
  } else if (Symbol.iterator in md) {
    for (const [k, v] of md as Iterable<readonly [string, string | Uint8Array]>) {
      add(k, v);
    }
  } else {
    for (const [k, v] of Object.entries(md)) {
      if (Array.isArray(v)) {
        for (const x of v) {
          add(k, x);
        }
      } else {
        add(k, v as string | Uint8Array);
      }
    }
  }
  return out;
}
