// A scripted raw TCP peer for the connection tests: it speaks the server side
// of the protocol with this package's wire module and lets a test decide
// what to answer, so behaviour calcd rarely shows (GOAWAY mid-flight,
// out-of-order replies, snappy bombs, unanswered cancels) is testable.

import * as net from "node:net";
import { once } from "node:events";
import { encodeGoaway, encodeSettings, encodeStatus, type RpcStatus, type Settings } from "../wire/control.js";
import { decodePreface, encodeFrame, FrameDecoder, FrameKind, type Frame } from "../wire/frame.js";
import { decodeRequestPayload, type RequestHeader } from "../wire/header.js";

export interface ReceivedFrame extends Frame {
  /** For REQUEST frames: the decoded header and message bytes. */
  header?: RequestHeader;
  message?: Uint8Array;
}

/** One accepted connection, seen from the server side. */
export class PeerConn {
  readonly frames: ReceivedFrame[] = [];
  private waiters: Array<() => void> = [];

  constructor(readonly socket: net.Socket) {}

  /** Resolves with the next received frame matching pred (already received ones count). */
  async next(pred: (f: ReceivedFrame) => boolean, from = 0): Promise<ReceivedFrame> {
    for (;;) {
      const f = this.frames.slice(from).find(pred);
      if (f) {
        return f;
      }
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** @internal */
  _add(f: ReceivedFrame): void {
    this.frames.push(f);
    const ws = this.waiters;
    this.waiters = [];
    ws.forEach((w) => w());
  }

  send(kind: FrameKind, flags: number, id: number, payload?: Uint8Array): void {
    this.socket.write(encodeFrame(kind, flags, id, payload));
  }
  respond(id: number, msg: Uint8Array, flags = 0): void {
    this.send(FrameKind.RESPONSE, flags, id, msg);
  }
  status(id: number, s: Partial<RpcStatus>): void {
    this.send(FrameKind.STATUS, 0, id, encodeStatus(s));
  }
  goaway(lastId: number, s: Partial<RpcStatus>): void {
    this.send(FrameKind.GOAWAY, 0, 0, encodeGoaway({ lastId, status: s }));
  }
}

/** A listening fake server on 127.0.0.1 (an ephemeral port). */
export class FakeServer {
  readonly conns: PeerConn[] = [];
  private waiters: Array<() => void> = [];
  private server: net.Server;

  private constructor(
    server: net.Server,
    readonly address: string,
  ) {
    this.server = server;
  }

  /**
   * Starts a server. onConnect decides the handshake: by default it sends
   * SETTINGS (with `settings` entries) as calcd does.
   */
  static async start(opts: { settings?: Partial<Settings>; handshake?: (c: PeerConn) => void } = {}): Promise<FakeServer> {
    let fake!: FakeServer;
    const server = net.createServer((socket) => {
      const c = new PeerConn(socket);
      let prefaceDone = false;
      let buf = Buffer.alloc(0);
      const dec = new FrameDecoder();
      socket.on("error", () => {});
      socket.on("data", (chunk: Buffer) => {
        let rest: Uint8Array = chunk;
        if (!prefaceDone) {
          buf = Buffer.concat([buf, chunk]);
          if (buf.length < 5) {
            return;
          }
          rest = decodePreface(buf).rest;
          prefaceDone = true;
          if (opts.handshake) {
            opts.handshake(c);
          } else {
            c.send(FrameKind.SETTINGS, 0, 0, encodeSettings(opts.settings ?? {}));
          }
        }
        for (const f of dec.push(rest)) {
          const rf: ReceivedFrame = { ...f };
          if (f.kind === FrameKind.REQUEST) {
            const d = decodeRequestPayload(f.flags, f.payload);
            rf.header = d.header;
            rf.message = d.message;
          }
          c._add(rf);
        }
      });
      fake.conns.push(c);
      const ws = fake.waiters;
      fake.waiters = [];
      ws.forEach((w) => w());
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const port = (server.address() as net.AddressInfo).port;
    fake = new FakeServer(server, `127.0.0.1:${port}`);
    return fake;
  }

  /** Resolves with the n-th accepted connection (0-based). */
  async conn(n = 0): Promise<PeerConn> {
    while (this.conns.length <= n) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return this.conns[n];
  }

  async close(): Promise<void> {
    for (const c of this.conns) {
      c.socket.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
