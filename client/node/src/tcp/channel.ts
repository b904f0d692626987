// CalcTcpChannel: a small load balancer over raw TCP connections, one per
// endpoint, each kept connected by itself, as the Go client's
// tcpconn.Client:
//
// - Endpoints: "host:port", a list "a:4000,b:4000", or an array of them.
// - Each endpoint (a SubChannel) connects on the channel's first use, again
//   at once after losing a READY connection (closed, or a GOAWAY: the old
//   connection finishes its calls meanwhile), and after a failed attempt
//   with gRPC's connection backoff (1 s, ×1.6 per failure, ±20%, at most
//   120 s, counted from the failed attempt's start), reset by a handshake
//   that succeeds. Each attempt is given max(its backoff, connectTimeoutMs).
// - Calls go round robin over the READY connections. With none READY a call
//   waits while an endpoint is CONNECTING and fails fast with UNAVAILABLE
//   once all are in TRANSIENT_FAILURE, unless waitForReady: then it waits
//   until its deadline.
// - A unary call the server never processed (above a GOAWAY's last id, or
//   refused by a connection that was going away or gone: CalcError
//   safeToRetry) is made again on a READY connection at once; with
//   retryIdempotent so is one that failed with UNAVAILABLE, after a
//   backoff (100 ms, ×1.6, ±20%, at most 1 s). Every attempt runs within
//   the call's one deadline, and maxAttempts (5) bounds them. A stream is
//   opened on a connection that can take it and is never retried.
// - getState() and the 'state' event report the aggregate state as gRPC's
//   round_robin does: READY if any endpoint is, else CONNECTING if any is,
//   else TRANSIENT_FAILURE (an endpoint stays there through its next
//   attempts until READY); IDLE before the first use, SHUTDOWN after close().
//
// Timers and idle connections do not keep Node's event loop alive; a call
// waiting for a connection does.

import { EventEmitter, setMaxListeners } from "node:events";
import { Code } from "@connectrpc/connect";
import { CalcError } from "../errors.js";
import { checkToken, loadTls, tlsEnabled } from "../security.js";
import { backoffDelay, backoffWithDefaults, CONNECTION_BACKOFF, RETRY_BACKOFF, type BackoffOptions } from "./backoff.js";
import { CalcTcpConnection, parseAddress, type TcpCallOptions, type TcpConnectionOptions, type TcpStream } from "./connection.js";
import { formatEndpoint, socketDialer, type Dialer, type Endpoint } from "./dial.js";

/** A channel's (or one endpoint's) connectivity state, named as gRPC's. */
export type ConnectivityState = "IDLE" | "CONNECTING" | "READY" | "TRANSIENT_FAILURE" | "SHUTDOWN";

/** The default bound on the attempts of one call. */
export const DEFAULT_MAX_ATTEMPTS = 5;

/** The default least time one connection attempt is given (gRPC's MIN_CONNECT_TIMEOUT). */
export const DEFAULT_MIN_CONNECT_TIMEOUT_MS = 20_000;

/** Options of a channel: those of every connection, plus reconnecting, balancing and retrying. */
export interface TcpChannelOptions extends TcpConnectionOptions {
  /**
   * The least time one connection attempt (connect, TLS handshake, SETTINGS)
   * is given; an attempt gets its backoff delay if that is longer.
   * Default 20 s.
   */
  connectTimeoutMs?: number;
  /**
   * Spacing of connection attempts to an endpoint after failures; missing
   * fields take gRPC's: baseDelayMs 1000, multiplier 1.6, jitter 0.2,
   * maxDelayMs 120000. Any positive values work: tests use milliseconds.
   */
  backoff?: BackoffOptions;
  /**
   * Retry a unary call that failed with UNAVAILABLE although the server may
   * have processed it (its connection was lost, or the server ended it while
   * shutting down), spaced by retryBackoff, within the call's deadline and
   * maxAttempts. Set it only when every unary method called is idempotent,
   * as calc's are. Default false.
   */
  retryIdempotent?: boolean;
  /** Spacing of those retries; missing fields: 100 ms, ×1.6, jitter 0.2, at most 1000 ms. */
  retryBackoff?: BackoffOptions;
  /** Attempts of one call at most, transparent retries included. Default 5. */
  maxAttempts?: number;
  /**
   * Calls that find no READY connection wait for one until their deadline
   * (a call's own waitForReady wins). Default false: they fail fast with
   * UNAVAILABLE once every endpoint is in TRANSIENT_FAILURE.
   */
  waitForReady?: boolean;
  /**
   * Opens the byte stream of one connection attempt; default: TCP, or TLS
   * from the tls* options (socketDialer). Another carrier of the protocol's
   * bytes plugs in here; CalcTcpConnection.open runs the protocol over what
   * it returns.
   */
  dial?: Dialer;
}

/** Options of one call on a channel. */
export interface ChannelCallOptions extends TcpCallOptions {
  /** Wait for a READY connection until the deadline; default: the channel's waitForReady. */
  waitForReady?: boolean;
}

/** One endpoint as the channel sees it. */
export interface EndpointState {
  address: string;
  state: Exclude<ConnectivityState, "SHUTDOWN">;
  /** The last failed connection attempt's error, until the endpoint is READY again. */
  lastError?: CalcError;
}

/** Parses a target: "host:port", "a:4000,b:4000", or an array of "host:port". */
export function parseEndpoints(target: string | readonly string[]): Endpoint[] {
  const parts = (typeof target === "string" ? target.split(",") : [...target]).map((s) => s.trim()).filter((s) => s !== "");
  if (parts.length === 0) {
    throw new CalcError(`no endpoint in ${JSON.stringify(target)}: want HOST:PORT, or several separated by commas`, Code.InvalidArgument);
  }
  const out: Endpoint[] = [];
  for (const p of parts) {
    let e: Endpoint;
    try {
      e = parseAddress(p);
    } catch (err) {
      throw new CalcError((err as Error).message, Code.InvalidArgument);
    }
    if (!out.some((x) => x.host === e.host && x.port === e.port)) {
      out.push(e);
    }
  }
  return out;
}

/** Resolves with true after ms, or with false as soon as a signal aborts. */
function sleep(ms: number, signals: Array<AbortSignal | undefined>): Promise<boolean> {
  return new Promise((resolve) => {
    const live = signals.filter((s): s is AbortSignal => s !== undefined);
    const done = (ok: boolean) => {
      clearTimeout(t);
      live.forEach((s) => s.removeEventListener("abort", onAbort));
      resolve(ok);
    };
    const onAbort = () => done(false);
    const t = setTimeout(() => done(true), Math.max(0, ms));
    if (live.some((s) => s.aborted)) {
      done(false);
      return;
    }
    live.forEach((s) => s.addEventListener("abort", onAbort, { once: true }));
  });
}

/**
 * A raw TCP channel to one or more calcd endpoints. Create it with
 * `new CalcTcpChannel("a:4000,b:4000", options)`; it connects on first use
 * (or connect()). Events: 'state' (state, previous).
 */
export class CalcTcpChannel extends EventEmitter {
  private readonly subs: SubChannel[];
  private readonly connectionOptions: TcpConnectionOptions;
  private readonly dial: Dialer;
  private readonly maxAttempts: number;
  private readonly retryIdempotent: boolean;
  private readonly retryBackoff: Required<BackoffOptions>;
  private readonly waitForReadyDefault: boolean;
  /** @internal */
  readonly backoff: Required<BackoffOptions>;
  /** @internal */
  readonly minConnectTimeoutMs: number;
  private state: ConnectivityState = "IDLE";
  private started = false;
  private shut = false;
  private next = 0;
  private lastErr: CalcError | undefined;
  /** Stops waiting picks and retry sleeps at close(). */
  private readonly closing = new AbortController();

  constructor(target: string | readonly string[], options: TcpChannelOptions = {}) {
    super();
    this.setMaxListeners(0); // every waiting call listens
    setMaxListeners(0, this.closing.signal);
    const endpoints = parseEndpoints(target);
    const secure = tlsEnabled(options);
    for (const e of endpoints) {
      checkToken(options.token, secure || options.dial !== undefined, e.host);
    }
    const { backoff, retryIdempotent, retryBackoff, maxAttempts, waitForReady, dial, connectTimeoutMs, ...conn } = options;
    this.connectionOptions = conn;
    this.backoff = backoffWithDefaults(backoff, CONNECTION_BACKOFF);
    this.retryBackoff = backoffWithDefaults(retryBackoff, RETRY_BACKOFF);
    this.retryIdempotent = retryIdempotent ?? false;
    this.maxAttempts = maxAttempts ?? DEFAULT_MAX_ATTEMPTS;
    if (!(this.maxAttempts >= 1)) {
      throw new RangeError(`maxAttempts must be at least 1, got ${maxAttempts}`);
    }
    this.waitForReadyDefault = waitForReady ?? false;
    this.minConnectTimeoutMs = connectTimeoutMs ?? DEFAULT_MIN_CONNECT_TIMEOUT_MS;
    this.dial = dial ?? socketDialer(loadTls(options));
    this.subs = endpoints.map((e) => new SubChannel(this, e));
  }

  /** The aggregate connectivity state. */
  getState(): ConnectivityState {
    return this.state;
  }

  /** Each endpoint's address and state, in the target's order. */
  endpoints(): EndpointState[] {
    return this.subs.map((s) => ({ address: s.address, state: s.state, lastError: s.lastError }));
  }

  /** The last connection failure of any endpoint, if any. */
  get lastError(): CalcError | undefined {
    return this.lastErr;
  }

  /** Starts connecting every endpoint, if not yet started. */
  connect(): void {
    if (this.started || this.shut) {
      return;
    }
    this.started = true;
    for (const s of this.subs) {
      s.start();
    }
    this.update();
  }

  /**
   * Resolves when the state differs from `from` with the new state, or
   * rejects with DEADLINE_EXCEEDED or CANCELLED when timeoutMs passes or
   * signal aborts first.
   */
  async waitForStateChange(from: ConnectivityState, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<ConnectivityState> {
    const deadline = options.timeoutMs === undefined ? undefined : performance.now() + options.timeoutMs;
    while (this.state === from) {
      await this.changed(deadline, options.signal, "waiting for a state change");
    }
    return this.state;
  }

  /**
   * Connects if IDLE and resolves once an endpoint is READY. Rejects with the
   * last connection error (UNAVAILABLE) once every endpoint has failed,
   * unless waitForReady; with DEADLINE_EXCEEDED, CANCELLED (signal, close())
   * when those come first.
   */
  async waitForReady(options: ChannelCallOptions = {}): Promise<void> {
    const deadline = options.timeoutMs === undefined ? undefined : performance.now() + options.timeoutMs;
    await this.pick(deadline, options.signal, options.waitForReady ?? this.waitForReadyDefault);
  }

  /**
   * A READY connection (round robin), connecting first if needed: for calls
   * that need one connection (pings), or to see which one calls use now.
   */
  connection(options: ChannelCallOptions = {}): Promise<CalcTcpConnection> {
    const deadline = options.timeoutMs === undefined ? undefined : performance.now() + options.timeoutMs;
    return this.pick(deadline, options.signal, options.waitForReady ?? this.waitForReadyDefault);
  }

  /**
   * Calls a unary method with an encoded request on a READY connection;
   * resolves with the encoded response or rejects with a CalcError. Retries
   * as the channel's options say, within options.timeoutMs in all.
   */
  async unary(method: string, request: Uint8Array, options: ChannelCallOptions = {}): Promise<Uint8Array> {
    const deadline = options.timeoutMs === undefined ? undefined : performance.now() + options.timeoutMs;
    const wait = options.waitForReady ?? this.waitForReadyDefault;
    let backoffs = 0;
    for (let attempt = 1; ; attempt++) {
      const conn = await this.pick(deadline, options.signal, wait);
      try {
        return await conn.unary(method, request, { ...options, timeoutMs: remaining(deadline) });
      } catch (e) {
        if (!(e instanceof CalcError) || e.code !== Code.Unavailable || attempt >= this.maxAttempts || this.shut) {
          throw e;
        }
        if (options.signal?.aborted || (deadline !== undefined && performance.now() >= deadline)) {
          throw e;
        }
        if (e.safeToRetry) {
          continue; // never processed: at once
        }
        if (!this.retryIdempotent) {
          throw e;
        }
        const d = backoffDelay(this.retryBackoff, backoffs++);
        if (deadline !== undefined && deadline - performance.now() < d) {
          throw e;
        }
        if (!(await sleep(d, [options.signal, this.closing.signal]))) {
          throw e;
        }
      }
    }
  }

  /**
   * Opens a streaming call on a READY connection (waiting as a unary call
   * does); once opened it is not retried. Errors after that surface when
   * reading the stream.
   */
  async stream(method: string, options: ChannelCallOptions = {}): Promise<TcpStream> {
    const deadline = options.timeoutMs === undefined ? undefined : performance.now() + options.timeoutMs;
    const conn = await this.pick(deadline, options.signal, options.waitForReady ?? this.waitForReadyDefault);
    return conn.stream(method, { ...options, timeoutMs: remaining(deadline) });
  }

  /**
   * Closes the channel: no more connection attempts, waiting calls fail
   * with CANCELLED, new calls too; calls in flight finish, then the
   * connections close. Resolves when they have.
   */
  async close(): Promise<void> {
    if (this.shut) {
      return;
    }
    this.shut = true;
    this.closing.abort();
    this.update();
    await Promise.all(this.subs.map((s) => s.close()));
  }

  // ---- picking ----

  private async pick(deadline: number | undefined, signal: AbortSignal | undefined, wait: boolean): Promise<CalcTcpConnection> {
    this.connect();
    for (;;) {
      if (this.shut) {
        throw new CalcError("channel closed", Code.Canceled);
      }
      if (signal?.aborted) {
        throw new CalcError("cancelled waiting for a connection", Code.Canceled, { cause: signal.reason, safeToRetry: true });
      }
      const ready = this.subs.filter((s) => s.conn?.isOpen);
      if (ready.length > 0) {
        const s = ready[this.next++ % ready.length];
        this.next %= 1 << 30;
        return s.conn!;
      }
      if (this.state === "TRANSIENT_FAILURE" && !wait) {
        throw new CalcError(`no server ready: ${this.lastErr?.rawMessage ?? "every endpoint failed to connect"}`, Code.Unavailable, { cause: this.lastErr });
      }
      await this.changed(deadline, signal, "waiting for a connection");
    }
  }

  /**
   * Resolves at the next change of any endpoint (close() is one); rejects
   * with DEADLINE_EXCEEDED at the deadline, CANCELLED when signal aborts.
   * Keeps the process alive meanwhile.
   */
  private changed(deadline: number | undefined, signal: AbortSignal | undefined, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const left = deadline === undefined ? undefined : deadline - performance.now();
      const cancelled = () => new CalcError(`cancelled ${what}`, Code.Canceled, { cause: signal?.reason, safeToRetry: true });
      if (signal?.aborted) {
        reject(cancelled());
        return;
      }
      if (left !== undefined && left <= 0) {
        reject(new CalcError(`deadline exceeded ${what}${this.lastErr ? ` (last error: ${this.lastErr.rawMessage})` : ""}`, Code.DeadlineExceeded, { safeToRetry: true }));
        return;
      }
      const cleanup = () => {
        clearTimeout(timer);
        this.off("_changed", onChange);
        signal?.removeEventListener("abort", onAbort);
      };
      const onChange = () => {
        cleanup();
        resolve();
      };
      const onAbort = () => {
        cleanup();
        reject(cancelled());
      };
      // Ref'd: a call waiting for a connection keeps the process alive.
      const timer = setTimeout(
        () => {
          cleanup();
          if (left === undefined) {
            resolve();
            return;
          }
          reject(new CalcError(`deadline exceeded ${what}${this.lastErr ? ` (last error: ${this.lastErr.rawMessage})` : ""}`, Code.DeadlineExceeded, { safeToRetry: true }));
        },
        left ?? 2 ** 30,
      );
      this.on("_changed", onChange); // close() changes the state too
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  // ---- state ----

  /** @internal An endpoint changed: recompute the aggregate state. */
  update(err?: CalcError): void {
    if (err) {
      this.lastErr = err;
    }
    let st: ConnectivityState;
    if (this.shut) {
      st = "SHUTDOWN";
    } else if (!this.started) {
      st = "IDLE";
    } else if (this.subs.some((s) => s.state === "READY")) {
      st = "READY";
    } else if (this.subs.some((s) => s.state === "CONNECTING" || s.state === "IDLE")) {
      st = "CONNECTING";
    } else {
      st = "TRANSIENT_FAILURE";
    }
    const prev = this.state;
    this.state = st;
    if (st !== prev) {
      this.emit("state", st, prev);
    }
    this.emit("_changed");
  }

  /** @internal One connection attempt, handshake included, within timeoutMs; signal abandons it. */
  async dialOne(endpoint: Endpoint, timeoutMs: number, signal: AbortSignal): Promise<CalcTcpConnection> {
    const started = performance.now();
    const socket = await this.dial(endpoint, { timeoutMs, signal });
    const onAbort = () => socket.destroy();
    if (signal.aborted) {
      onAbort();
    }
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await CalcTcpConnection.open(socket, { ...this.connectionOptions, connectTimeoutMs: Math.max(1, timeoutMs - (performance.now() - started)) }, formatEndpoint(endpoint));
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }
}

/** The time left until deadline (undefined for none), at least 0. */
function remaining(deadline: number | undefined): number | undefined {
  return deadline === undefined ? undefined : Math.max(0, deadline - performance.now());
}

/** One endpoint of a channel, kept connected. */
class SubChannel {
  readonly address: string;
  state: Exclude<ConnectivityState, "SHUTDOWN"> = "IDLE";
  /** The READY connection. */
  conn: CalcTcpConnection | undefined;
  lastError: CalcError | undefined;
  /** Connections that got GOAWAY and still finish their calls. */
  private readonly old = new Set<CalcTcpConnection>();
  private retries = 0;
  private timer: NodeJS.Timeout | undefined;
  private attempt: AbortController | undefined;
  private closed = false;

  constructor(
    private readonly ch: CalcTcpChannel,
    private readonly endpoint: Endpoint,
  ) {
    this.address = formatEndpoint(endpoint);
  }

  start(): void {
    if (this.state === "IDLE" && !this.closed) {
      this.set("CONNECTING");
      void this.connectNow();
    }
  }

  /** State changes; TRANSIENT_FAILURE stays through the next attempts until READY. */
  private set(st: Exclude<ConnectivityState, "SHUTDOWN">, err?: CalcError): void {
    if (st === "CONNECTING" && this.state === "TRANSIENT_FAILURE") {
      return;
    }
    this.state = st;
    this.lastError = st === "READY" ? undefined : (err ?? this.lastError);
    this.ch.update(err);
  }

  /** One connection attempt; after a failure the next starts the backoff delay after this one started. */
  private async connectNow(): Promise<void> {
    const delay = backoffDelay(this.ch.backoff, this.retries);
    const next = performance.now() + delay;
    const ac = new AbortController();
    this.attempt = ac;
    let conn: CalcTcpConnection;
    try {
      conn = await this.ch.dialOne(this.endpoint, Math.max(delay, this.ch.minConnectTimeoutMs), ac.signal);
    } catch (e) {
      this.attempt = undefined;
      if (this.closed) {
        return;
      }
      const err = e instanceof CalcError ? e : new CalcError(`connecting to ${this.address}: ${(e as Error)?.message ?? e}`, Code.Unavailable, { cause: e });
      this.retries++;
      this.set("TRANSIENT_FAILURE", err);
      this.timer = setTimeout(() => {
        this.timer = undefined;
        if (!this.closed) {
          this.set("CONNECTING");
          void this.connectNow();
        }
      }, next - performance.now());
      this.timer.unref();
      return;
    }
    this.attempt = undefined;
    if (this.closed) {
      conn.destroy();
      return;
    }
    this.retries = 0;
    this.conn = conn;
    const lost = () => {
      if (this.conn !== conn) {
        return;
      }
      this.conn = undefined;
      if (!this.closed) {
        // At once after losing a READY connection, as gRPC does.
        this.set("CONNECTING");
        void this.connectNow();
      }
    };
    conn.once("goaway", () => {
      // It finishes the calls it accepted, then closes by itself.
      this.old.add(conn);
      lost();
    });
    conn.once("close", () => {
      this.old.delete(conn);
      lost();
    });
    this.set("READY");
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.attempt?.abort();
    const conns = [...this.old];
    if (this.conn) {
      conns.push(this.conn);
    }
    this.conn = undefined;
    await Promise.all(conns.map((c) => c.close()));
  }
}
