// CallStream: one streaming call on a connection, whichever carries it.
// TcpStream and WebSocketStream are its names in the package's API.

import { Code } from "@connectrpc/connect";
import { CalcError } from "../errors.js";
import type { CallState, CallStatus, Connection } from "./connection.js";

/**
 * A streaming call. Read the server's messages with
 * `for await (const msg of stream)`: iteration ends when the server ends the
 * call with OK and throws a CalcError otherwise. Server messages are
 * buffered as they arrive, so writing without reading never stalls the
 * connection.
 */
export class CallStream implements AsyncIterable<Uint8Array> {
  private conn: Connection | undefined;
  private call: CallState | undefined;
  private readonly queue: Uint8Array[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;
  private error: CalcError | undefined;
  private resolveStatus!: (s: CallStatus) => void;
  /** The call's final status; never rejects. */
  readonly status: Promise<CallStatus>;

  /** @internal */
  constructor(readonly method: string) {
    this.status = new Promise((resolve) => (this.resolveStatus = resolve));
  }

  /** The call id on its connection (0 if the call could not start). */
  get id(): number {
    return this.call?.id ?? 0;
  }

  /** @internal */
  _attach(conn: Connection, call: CallState): void {
    this.conn = conn;
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

  /** Sends a message; resolves when the connection can take more. */
  send(msg: Uint8Array): Promise<void> {
    if (!this.call || !this.conn || this.ended) {
      return Promise.reject(this.error ?? new CalcError("call already ended", Code.FailedPrecondition));
    }
    return this.conn.send(this.call, msg);
  }

  /** Ends the sending side (HALF_CLOSE). */
  closeSend(): void {
    if (this.call) {
      this.conn?.closeSend(this.call);
    }
  }

  /** Cancels the call (CANCEL): it ends with CANCELLED unless it already finished. */
  cancel(): void {
    if (this.call) {
      this.conn?.cancelCall(this.call);
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
