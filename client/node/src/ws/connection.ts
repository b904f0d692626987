// CalcWebSocketConnection: calc's raw TCP protocol (PROTOCOL.md) over one
// WebSocket to calcd's HTTP port (/ws, subprotocol calc.v1), for browsers:
// many calls in flight paired by id, unary calls as promises, streaming
// calls as async iterables, AbortSignal cancellation, deadlines, metadata,
// snappy compression, ping/pong keepalive and GOAWAY handling, as
// CalcTcpConnection does over a socket. It uses standard Web APIs only
// (WebSocket, Uint8Array, DataView, TextEncoder, timers): in Node, pass a
// WebSocket implementation (the ws package) as options.WebSocket, or use
// Node 22's global WebSocket.

import { Code } from "@connectrpc/connect";
import { CalcError } from "../errors.js";
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
  FRAME_OVERHEAD,
  FrameDecoder,
  FrameKind,
  kindName,
  PREFACE,
  WireError,
  type Frame,
} from "../wire/frame.js";
import { encodeRequestPayload, MAX_BOUND_REFS, MAX_METHOD_REF, type MetadataEntry } from "../wire/header.js";
import { decodeMessage, encodeFrame, encodeMessage, hex, toMetadataEntries, type MetadataInit } from "./codec.js";

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
export interface WebSocketConnectionOptions {
  /**
   * The WebSocket implementation; default globalThis.WebSocket (browsers,
   * Node 22+). In Node 20 pass the ws package's: `WebSocket` from "ws".
   */
  WebSocket?: WebSocketConstructor;
  /** Time allowed for the WebSocket handshake plus the server's SETTINGS. Default 10 s. */
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

/** Options of one call. */
export interface WebSocketCallOptions {
  /** Deadline, in milliseconds from now: sent as the deadline budget and enforced locally. */
  timeoutMs?: number;
  /** Aborting cancels the call (a CANCEL frame); it then ends with CANCELLED. */
  signal?: AbortSignal;
  /** Call metadata, seen by the server as gRPC metadata (a bearer token: authorization). */
  metadata?: MetadataInit;
}

/** The final status of a call, with where it came from. */
export interface WebSocketCallStatus extends RpcStatus {
  source: "server" | "client";
}

type ConnState = "connecting" | "open" | "draining" | "closed";

/** Frames queued in one tick go out in one message, up to this many bytes. */
const COALESCE_BYTES = 64 << 10;
/** A stream's send waits while the WebSocket buffers more than this. */
const SEND_HIGH_WATER = 1 << 20;
const EMPTY = new Uint8Array(0);
type Timer = ReturnType<typeof setTimeout>;

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
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private keepalive: ReturnType<typeof setInterval> | undefined;
  private keepaliveOutstanding: string | undefined;
  private goawayInfo: Goaway | undefined;
  private closeError: CalcError | undefined;
  private resolveClosed!: () => void;
  private readonly closed = new Promise<void>((resolve) => (this.resolveClosed = resolve));
  private onReady: (() => void) | undefined;

  private constructor(
    private readonly socket: WebSocketLike,
    private readonly url: string,
    private readonly options: WebSocketConnectionOptions,
  ) {
    this.decoder = new FrameDecoder(options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE);
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.cancelGraceMs = options.cancelGraceMs ?? 2000;
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
  static connect(url: string, options: WebSocketConnectionOptions = {}): Promise<CalcWebSocketConnection> {
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS) {
      return Promise.reject(
        new CalcError("no WebSocket implementation: pass options.WebSocket (in Node 20, WebSocket from the ws package)", Code.FailedPrecondition),
      );
    }
    let socket: WebSocketLike;
    try {
      socket = new WS(url, [SUBPROTOCOL]);
    } catch (e) {
      return Promise.reject(new CalcError(`cannot open a WebSocket to ${url}: ${(e as Error).message}`, Code.InvalidArgument, { cause: e }));
    }
    socket.binaryType = "arraybuffer";
    return new CalcWebSocketConnection(socket, url, options).handshake(options.connectTimeoutMs ?? 10_000);
  }

  /** The server's settings (the defaults until its SETTINGS frame arrives). */
  get settings(): Readonly<Settings> {
    return this.serverSettings;
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
  unary(method: string, request: Uint8Array, options: WebSocketCallOptions = {}): Promise<Uint8Array> {
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
  stream(method: string, options: WebSocketCallOptions = {}): WebSocketStream {
    const s = new WebSocketStream(this);
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
      this.write(encodeFrame(FrameKind.PING, 0, 0, data));
    });
  }

  /**
   * Closes gracefully: new calls fail with UNAVAILABLE, calls in flight run
   * to their end, then the WebSocket is closed. Resolves when it is.
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

  private handshake(timeoutMs: number): Promise<CalcWebSocketConnection> {
    return new Promise<CalcWebSocketConnection>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.shutdown(new CalcError(`no SETTINGS from ${this.url} within ${timeoutMs} ms`, Code.Unavailable, { safeToRetry: true }));
      }, timeoutMs);
      this.onReady = () => {
        clearTimeout(timer);
        resolve(this);
      };
      this.onClose = (err) => {
        clearTimeout(timer);
        this.onClose = undefined;
        reject(err ?? unavailable("connection closed during the handshake"));
      };
      let opened = false;
      this.socket.onopen = () => {
        opened = true;
        if (this.socket.protocol !== SUBPROTOCOL) {
          this.protocolError(`the server chose the WebSocket subprotocol ${JSON.stringify(this.socket.protocol)}, not ${SUBPROTOCOL}`);
          return;
        }
        this.write(PREFACE);
      };
      this.socket.onmessage = (ev) => this.onData(ev.data);
      this.socket.onerror = () => {}; // the close event follows, and says more
      this.socket.onclose = (ev) => {
        if (!opened) {
          this.shutdown(
            new CalcError(
              `cannot open a WebSocket to ${url(this.url)} (close code ${ev.code}): the server is unreachable or refused the upgrade ` +
                `(an origin or subprotocol it does not allow)`,
              Code.Unavailable,
              { safeToRetry: true },
            ),
          );
          return;
        }
        this.onSocketClose(ev.code, ev.reason);
      };
    });
  }

  private onData(data: unknown): void {
    let chunk: Uint8Array;
    if (data instanceof ArrayBuffer) {
      chunk = new Uint8Array(data);
    } else if (ArrayBuffer.isView(data)) {
      chunk = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    } else {
      this.protocolError("a text message on a calc.v1 WebSocket");
      return;
    }
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      for (const f of (e as { frames?: Frame[] }).frames ?? []) {
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

  private onSocketClose(code: number, reason: string): void {
    if (this.state === "closed") {
      return;
    }
    const why = `WebSocket closed by the server (${code}${reason ? ` ${reason}` : ""})`;
    if (this.decoder.bufferedBytes > 0) {
      this.shutdown(unavailable(`${why} mid-frame`));
      return;
    }
    const g = this.goawayInfo;
    this.shutdown(g ? unavailable(`${why} after GOAWAY (${g.status.code}: ${g.status.message})`) : unavailable(why));
  }

  private protocolError(why: string): void {
    this.shutdown(new CalcError(`protocol error from the server: ${why}`, Code.Internal));
  }

  /**
   * Fails every call and pending ping with err and closes the WebSocket;
   * graceful (close() after the last call) reports no error to onClose.
   */
  private shutdown(err: CalcError, graceful = false): void {
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
    this.pending = [];
    this.pendingBytes = 0;
    try {
      this.socket.close(1000);
    } catch {
      // already closing
    }
    this.resolveClosed();
    this.onClose?.(graceful ? undefined : err);
  }

  private maybeEndDraining(): void {
    if (this.state === "draining" && this.calls.size === 0) {
      this.flush();
      this.shutdown(unavailable("connection closed by the client"), true);
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
    // In Node, an idle connection must not keep the process alive.
    (this.keepalive as { unref?: () => void }).unref?.();
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
          this.connectionFrame(f);
          this.serverSettings = decodeSettings(f.payload).settings;
          if (this.state === "connecting") {
            this.state = "open";
            this.startKeepalive();
            this.onClose = undefined;
            this.onReady?.();
          }
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
          this.onGoawayFrame(f);
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
      // send the name again until a call proves it.
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
      p.resolve(performance.now() - p.sent);
    }
  }

  private onGoawayFrame(f: Frame): void {
    this.connectionFrame(f);
    const g = decodeGoaway(f.payload);
    this.goawayInfo = g;
    const why = g.status.code === 0 ? `server going away: ${g.status.message}` : `server sent GOAWAY (${g.status.code}): ${g.status.message}`;
    if (this.state === "connecting") {
      // Refused before SETTINGS: report the server's reason.
      this.shutdown(g.status.code !== 0 ? CalcError.fromStatus(g.status, { safeToRetry: true }) : unavailable(why, true));
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
    this.onGoaway?.({ ...g, failedIds });
    this.maybeEndDraining();
  }

  // ---- calls ----

  private startCall(method: string, options: WebSocketCallOptions, streaming: boolean, request: Uint8Array | undefined, handlers: CallHandlers): CallState {
    const call: CallState = {
      id: 0,
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
    let frame: Uint8Array;
    try {
      const metadata: MetadataEntry[] | undefined = options.metadata === undefined ? undefined : toMetadataEntries(options.metadata);
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
          timeoutMicros: options.timeoutMs === undefined ? undefined : Math.round(options.timeoutMs * 1000),
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
  private checkFrame(kind: FrameKind, flags: number, id: number, payload: Uint8Array): Uint8Array {
    if (FRAME_OVERHEAD - 4 + payload.length > this.serverSettings.MAX_FRAME_SIZE) {
      throw new CalcError(
        `${kindName(kind)} frame of ${payload.length + 6} bytes exceeds the server's max frame size ${this.serverSettings.MAX_FRAME_SIZE}`,
        Code.ResourceExhausted,
      );
    }
    return encodeFrame(kind, flags, id, payload);
  }

  /**
   * Queues bytes for the server. Everything queued in one tick leaves in
   * one binary message (at most COALESCE_BYTES, or one frame alone): the
   * server reads the messages as one byte stream, so a message need not
   * end on a frame boundary, but it may not exceed the max frame size plus
   * 4 bytes, which one frame never does.
   */
  private write(bytes: Uint8Array): void {
    if (this.state === "closed") {
      return;
    }
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
    if (this.pending.length === 0 || this.state === "closed") {
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
      this.shutdown(unavailable(`WebSocket send failed: ${(e as Error).message}`));
    }
  }

  /** @internal Sends one message on a streaming call. */
  _send(call: CallState, msg: Uint8Array): Promise<void> {
    if (call.done) {
      return Promise.reject(call.error ?? new CalcError("call already ended", Code.FailedPrecondition));
    }
    if (call.halfClosed) {
      return Promise.reject(new CalcError("send after closeSend", Code.FailedPrecondition));
    }
    let frame: Uint8Array;
    try {
      const { bytes, flags } = this.prepareMessage(msg);
      frame = this.checkFrame(FrameKind.MESSAGE, flags, call.id, bytes);
    } catch (e) {
      const err = e as CalcError;
      this.failCall(call, err, true);
      return Promise.reject(err);
    }
    this.write(frame);
    if (this.socket.bufferedAmount + this.pendingBytes <= SEND_HIGH_WATER) {
      return Promise.resolve();
    }
    // A WebSocket has no drain event: look again until its buffer empties.
    return new Promise<void>((resolve) => {
      const check = () => {
        if (this.state === "closed" || call.done || this.socket.bufferedAmount <= SEND_HIGH_WATER / 2) {
          resolve();
        } else {
          setTimeout(check, 5);
        }
      };
      setTimeout(check, 0);
    });
  }

  /** @internal Sends HALF_CLOSE on a streaming call. */
  _closeSend(call: CallState): void {
    if (call.done || call.halfClosed) {
      return;
    }
    call.halfClosed = true;
    this.write(encodeFrame(FrameKind.HALF_CLOSE, 0, call.id));
  }

  /**
   * @internal Cancels a call: sends CANCEL and waits (up to cancelGraceMs)
   * for the server's final answer, normally STATUS CANCELLED.
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

  private finish(call: CallState, err: CalcError | undefined, status?: WebSocketCallStatus): void {
    if (call.done) {
      return;
    }
    call.done = true;
    call.error = err;
    clearTimeout(call.deadlineTimer);
    clearTimeout(call.graceTimer);
    call.removeAbort?.();
    this.calls.delete(call.id);
    const st: WebSocketCallStatus = status ?? {
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
  onEnd(err: CalcError | undefined, status: WebSocketCallStatus): void;
}

/** @internal The state of one call on a connection. */
export interface CallState {
  id: number;
  streaming: boolean;
  handlers: CallHandlers;
  ref: MethodRef;
  sentName: boolean;
  done: boolean;
  halfClosed: boolean;
  cancelSent: boolean;
  error?: CalcError;
  deadlineTimer?: Timer;
  graceTimer?: Timer;
  removeAbort?: () => void;
}

/**
 * A streaming call on a CalcWebSocketConnection. Read the server's messages
 * with `for await (const msg of stream)`: iteration ends when the server ends
 * the call with OK and throws a CalcError otherwise. Server messages are
 * buffered as they arrive, so writing without reading never stalls the
 * connection.
 */
export class WebSocketStream implements AsyncIterable<Uint8Array> {
  private call: CallState | undefined;
  private readonly queue: Uint8Array[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;
  private error: CalcError | undefined;
  private resolveStatus!: (s: WebSocketCallStatus) => void;
  /** The call's final status; never rejects. */
  readonly status: Promise<WebSocketCallStatus>;

  /** @internal */
  constructor(private readonly conn: CalcWebSocketConnection) {
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
  _end(err: CalcError | undefined, status: WebSocketCallStatus): void {
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

  /** Sends a message; resolves when the WebSocket can take more. */
  send(msg: Uint8Array): Promise<void> {
    if (!this.call || this.ended) {
      return Promise.reject(this.error ?? new CalcError("call already ended", Code.FailedPrecondition));
    }
    return this.conn._send(this.call, msg);
  }

  /** Ends the sending side (HALF_CLOSE). */
  closeSend(): void {
    if (this.call) {
      this.conn._closeSend(this.call);
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

function unavailable(message: string, safeToRetry = false): CalcError {
  return new CalcError(message, Code.Unavailable, { safeToRetry });
}

/** The URL without its query (which may hold secrets), for messages. */
function url(u: string): string {
  const q = u.indexOf("?");
  return q < 0 ? u : u.slice(0, q);
}
