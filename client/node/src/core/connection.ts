// The one implementation of a calc raw TCP protocol connection (PROTOCOL.md)
// that both carriers share: the call table (many calls in flight paired by
// id), method refs, unary calls as promises, streaming calls, deadlines,
// AbortSignal cancellation, metadata, snappy compression, SETTINGS, PING/PONG
// keepalive, GOAWAY handling and the connection's lifecycle. It runs over a
// ByteStream, the few things a carrier does: a Node socket (src/tcp, TCP or
// TLS) or a WebSocket (src/ws, calcd's /ws, which carries the same bytes
// unchanged). Standard Web APIs only (Uint8Array, DataView, TextEncoder,
// timers, performance.now): no Node module, so it runs in a browser.

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
  encodeFrame,
  FRAME_OVERHEAD,
  FrameDecoder,
  FrameKind,
  hex,
  kindName,
  PREFACE,
  WireError,
  type Frame,
  type FrameAllocator,
} from "../wire/frame.js";
import { encodeRequestPayload, MAX_BOUND_REFS, MAX_METHOD_REF, type MetadataEntry } from "../wire/header.js";
import { decodeMessage, encodeMessage, type SnappyCodec } from "../wire/message.js";
import { toMetadataEntries, type MetadataInit } from "./metadata.js";
import type { CallStream } from "./stream.js";

/** Options of a connection that mean the same over every carrier. */
export interface ConnectionOptions {
  /** Time allowed to open the connection and receive the server's SETTINGS. Default 10 s. */
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
export interface CallOptions {
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

/**
 * What a connection needs of the byte stream it runs over. The carrier
 * (adapter) feeds what it receives back through Connection.receive,
 * peerClosed and shutdown.
 */
export interface ByteStream {
  /** Sends bytes; bytes written within one tick should leave together. */
  write(bytes: Uint8Array): void;
  /**
   * Undefined when the stream can take more now; otherwise a promise that
   * resolves when it can, when it closes, or once gaveUp() is true.
   */
  writable(gaveUp: () => boolean): Promise<void> | undefined;
  /** Ends the stream after what was written: the connection drained after close(). */
  end(): void;
  /** Closes the stream now: the connection has ended. */
  destroy(): void;
  /** Resolves once the stream is closed. */
  readonly closed: Promise<void>;
  /**
   * Tells the carrier whether the connection has work in flight (calls,
   * pings, the handshake): a Node socket keeps the process alive only then.
   */
  setBusy?(busy: boolean): void;
}

/** What a connection reports to the class that carries it. */
export interface ConnectionEvents {
  /** The server sent GOAWAY; the calls it failed are in failedIds. */
  onGoaway(g: GoawayInfo): void;
  /** The connection ended, once: err says why, undefined for a graceful close(). */
  onClose(err: CalcError | undefined): void;
}

/** What a carrier gives a connection besides the options. */
export interface CarrierConfig {
  /** Names the server in messages: "the server", or a URL. */
  peerName: string;
  /** Metadata sent with every call that has no entry of that key (a bearer token). */
  authorization?: MetadataEntry;
  /** Snappy implementation; default snappyjs. */
  snappy?: SnappyCodec;
  /** Allocates frames; default new Uint8Array (a Node socket's: Buffer.allocUnsafe). */
  alloc?: FrameAllocator;
}

type ConnState = "connecting" | "open" | "draining" | "closed";
type Timer = ReturnType<typeof setTimeout>;

const EMPTY = new Uint8Array(0);

/** Returns a CalcError UNAVAILABLE. */
export function unavailable(message: string, safeToRetry = false): CalcError {
  return new CalcError(message, Code.Unavailable, { safeToRetry });
}

/**
 * Connection runs the protocol over a ByteStream. CalcTcpConnection and
 * CalcWebSocketConnection each hold one and give it their carrier; this
 * class is not exported by the package.
 */
export class Connection {
  private stream!: ByteStream;
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
  private keepalive: ReturnType<typeof setInterval> | undefined;
  private keepaliveOutstanding: string | undefined;
  private goawayInfo: Goaway | undefined;
  private closeError: CalcError | undefined;
  private onReady: (() => void) | undefined;
  private onHandshakeFail: ((err: CalcError) => void) | undefined;
  private readonly snappy: SnappyCodec | undefined;
  private readonly alloc: FrameAllocator | undefined;

  constructor(
    private readonly options: ConnectionOptions,
    private readonly carrier: CarrierConfig,
    private readonly events: ConnectionEvents,
  ) {
    this.decoder = new FrameDecoder(options.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE);
    this.maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.cancelGraceMs = options.cancelGraceMs ?? 2000;
    this.snappy = carrier.snappy;
    this.alloc = carrier.alloc;
  }

  /** Gives the connection its byte stream; called once, before handshake(). */
  attach(stream: ByteStream): void {
    this.stream = stream;
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

  /** True until the server's SETTINGS (or the end of the connection). */
  get isConnecting(): boolean {
    return this.state === "connecting";
  }

  /** Number of calls in flight. */
  get inFlight(): number {
    return this.calls.size;
  }

  /** Calls a unary method with an encoded request; resolves with the encoded response or rejects with a CalcError. */
  unary(method: string, request: Uint8Array, options: CallOptions = {}): Promise<Uint8Array> {
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

  /** Starts the streaming call that s reads and writes. */
  openStream(s: CallStream, options: CallOptions): void {
    const call = this.startCall(s.method, options, true, undefined, {
      onMessage: (m) => s._push(m),
      onEnd: (err, status) => s._end(err, status),
    });
    s._attach(this, call);
  }

  /** Sends a PING and resolves with the round-trip time in milliseconds. */
  ping(payload?: Uint8Array): Promise<number> {
    if (this.state === "closed") {
      return Promise.reject(this.closeError ?? unavailable("connection closed"));
    }
    let data = payload;
    if (data === undefined) {
      data = this.pingPayload();
    }
    checkPingPayload(data);
    const key = hex(data);
    return new Promise<number>((resolve, reject) => {
      this.pings.set(key, { sent: performance.now(), resolve, reject });
      this.updateBusy();
      this.write(encodeFrame(FrameKind.PING, 0, 0, data, this.alloc));
    });
  }

  /** Closes gracefully: new calls fail, calls in flight run to their end, then the stream ends. */
  close(): Promise<void> {
    if (this.state === "open" || this.state === "connecting") {
      this.state = "draining";
    }
    this.maybeEndDraining();
    return this.stream.closed;
  }

  // ---- connection lifecycle (the carrier drives these) ----

  /**
   * Resolves when the server's SETTINGS arrive, or rejects with why the
   * connection ended first (within timeoutMs). The carrier calls begin()
   * once its stream is open.
   */
  handshake(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.shutdown(new CalcError(`no SETTINGS from ${this.carrier.peerName} within ${timeoutMs} ms`, Code.Unavailable, { safeToRetry: true }));
      }, timeoutMs);
      this.onReady = () => {
        clearTimeout(timer);
        this.onHandshakeFail = undefined;
        resolve();
      };
      this.onHandshakeFail = (err) => {
        clearTimeout(timer);
        this.onReady = undefined;
        reject(err);
      };
    });
  }

  /** Sends the preface: the carrier's stream is open. */
  begin(): void {
    this.write(PREFACE);
  }

  /** Feeds bytes received from the server. */
  receive(chunk: Uint8Array): void {
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

  /** The server ended the stream; why says how ("connection closed by the server"). */
  peerClosed(why: string): void {
    if (this.state === "closed") {
      return;
    }
    try {
      this.decoder.end();
    } catch (e) {
      this.shutdown(unavailable(`${why} mid-frame (${(e as Error).message})`));
      return;
    }
    const g = this.goawayInfo;
    this.shutdown(g ? unavailable(`${why} after GOAWAY (${g.status.code}: ${g.status.message})`) : unavailable(why));
  }

  /** Ends the connection: the server broke the protocol. */
  protocolError(why: string): void {
    this.shutdown(new CalcError(`protocol error from the server: ${why}`, Code.Internal));
  }

  /**
   * Ends the connection now: fails every call and pending ping with err and
   * closes the stream. graceful (the end of close()) reports no error to
   * onClose. Does nothing once the connection has ended.
   */
  shutdown(err: CalcError, graceful = false): void {
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
    this.stream.destroy();
    this.onHandshakeFail?.(err);
    this.events.onClose(graceful ? undefined : err);
  }

  /** Whether the carrier should keep the process alive: calls or pings in flight, or not open yet. */
  private updateBusy(): void {
    if (this.state === "closed" || !this.stream.setBusy) {
      return;
    }
    this.stream.setBusy(!(this.calls.size === 0 && this.pings.size === 0 && this.state === "open"));
  }

  private maybeEndDraining(): void {
    this.updateBusy();
    if (this.state === "draining" && this.calls.size === 0) {
      this.stream.end();
    }
  }

  private pingPayload(): Uint8Array {
    const data = new Uint8Array(8);
    new DataView(data.buffer).setBigUint64(0, BigInt(++this.nextPing));
    return data;
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
      const data = this.pingPayload();
      this.keepaliveOutstanding = hex(data);
      this.ping(data).catch(() => {});
    }, ms);
    // In Node, keepalive alone must not keep the process alive.
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
          this.write(encodeFrame(FrameKind.PONG, 0, 0, checkPingPayload(f.payload), this.alloc));
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
      this.updateBusy();
      this.onReady?.();
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
      msg = decodeMessage(f.payload, f.flags, this.maxMessageSize, this.snappy);
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
      this.updateBusy();
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
    this.events.onGoaway({ ...g, failedIds });
    this.maybeEndDraining();
  }

  // ---- calls ----

  private startCall(method: string, options: CallOptions, streaming: boolean, request: Uint8Array | undefined, handlers: CallHandlers): CallState {
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
    let frame: Uint8Array;
    try {
      let metadata: MetadataEntry[] | undefined = options.metadata === undefined ? undefined : toMetadataEntries(options.metadata);
      const auth = this.carrier.authorization;
      if (auth && !metadata?.some(([k]) => k === auth[0])) {
        metadata = [auth, ...(metadata ?? [])];
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
    this.updateBusy();
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
    return encodeMessage(msg, this.options.compressThreshold ?? this.serverSettings.COMPRESS_THRESHOLD, this.snappy);
  }

  /** Encodes a frame after checking it against the server's max frame size. */
  private checkFrame(kind: FrameKind, flags: number, id: number, payload: Uint8Array): Uint8Array {
    if (FRAME_OVERHEAD - 4 + payload.length > this.serverSettings.MAX_FRAME_SIZE) {
      throw new CalcError(
        `${kindName(kind)} frame of ${payload.length + 6} bytes exceeds the server's max frame size ${this.serverSettings.MAX_FRAME_SIZE}`,
        Code.ResourceExhausted,
      );
    }
    return encodeFrame(kind, flags, id, payload, this.alloc);
  }

  /** Writes a frame, unless the connection has ended. */
  private write(frame: Uint8Array): void {
    if (this.state !== "closed") {
      this.stream.write(frame);
    }
  }

  /** Sends one message on a streaming call; resolves when the stream can take more. */
  send(call: CallState, msg: Uint8Array): Promise<void> {
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
    return this.stream.writable(() => this.state === "closed" || call.done) ?? Promise.resolve();
  }

  /** Sends HALF_CLOSE on a streaming call. */
  closeSend(call: CallState): void {
    if (call.done || call.halfClosed) {
      return;
    }
    call.halfClosed = true;
    this.write(encodeFrame(FrameKind.HALF_CLOSE, 0, call.id, undefined, this.alloc));
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
    this.write(encodeFrame(FrameKind.CANCEL, 0, call.id, undefined, this.alloc));
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
      this.write(encodeFrame(FrameKind.CANCEL, 0, call.id, undefined, this.alloc));
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
    this.updateBusy();
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
  deadlineTimer?: Timer;
  graceTimer?: Timer;
  removeAbort?: () => void;
}
