// A scripted raw TCP peer for the connection tests: it speaks the server side
// of the protocol with this package's wire module and lets a test decide
// what to answer, so behaviour calcd rarely shows (GOAWAY mid-flight,
// out-of-order replies, snappy bombs, unanswered cancels) is testable. It
// listens on a TCP port and, as calcd's /ws does, on a WebSocket (the ws
// package's server, subprotocol calc.v1) carrying the same bytes, so one
// test body runs over both carriers.

import * as net from "node:net";
import { once } from "node:events";
import { WebSocketServer, type WebSocket } from "ws";
import { encodeGoaway, encodeSettings, encodeStatus, type RpcStatus, type Settings } from "../wire/control.js";
import { decodePreface, encodeFrame, FrameDecoder, FrameKind, type Frame } from "../wire/frame.js";
import { decodeRequestPayload, type RequestHeader } from "../wire/header.js";

export interface ReceivedFrame extends Frame {
  /** For REQUEST frames: the decoded header and message bytes. */
  header?: RequestHeader;
  message?: Uint8Array;
}

/** How a PeerConn sends and hangs up: a TCP socket or a WebSocket. */
interface PeerLink {
  write(bytes: Uint8Array): void;
  end(): void;
  destroy(): void;
}

/** One accepted connection, seen from the server side. */
export class PeerConn {
  readonly frames: ReceivedFrame[] = [];
  private waiters: Array<() => void> = [];

  constructor(private readonly link: PeerLink) {}

  /** Sends bytes as they are (part of a frame, say). */
  writeRaw(bytes: Uint8Array): void {
    this.link.write(bytes);
  }

  /** Ends the connection in good order (a TCP FIN; a WebSocket close 1000). */
  end(): void {
    this.link.end();
  }

  /** Drops the connection at once (a TCP reset; an abnormal WebSocket close). */
  destroy(): void {
    this.link.destroy();
  }

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
    this.link.write(encodeFrame(kind, flags, id, payload));
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

/** Returns what feeds an accepted connection's bytes: the preface, then frames. */
function peerReader(c: PeerConn, opts: FakeServerOptions): (chunk: Uint8Array) => void {
  let prefaceDone = false;
  let buf = new Uint8Array(0);
  const dec = new FrameDecoder();
  return (chunk) => {
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
  };
}

/**
 * How a fake server answers: by default SETTINGS (with `settings` entries)
 * after the preface, as calcd does; handshake replaces that.
 */
export interface FakeServerOptions {
  settings?: Partial<Settings>;
  handshake?: (c: PeerConn) => void;
}

/** A listening fake server on 127.0.0.1 (ephemeral ports): raw TCP at address, WebSocket at wsUrl. */
export class FakeServer {
  readonly conns: PeerConn[] = [];
  private waiters: Array<() => void> = [];
  private readonly closers: Array<() => void> = [];

  private constructor(
    private readonly server: net.Server,
    private readonly wss: WebSocketServer,
    /** HOST:PORT of the raw TCP listener. */
    readonly address: string,
    /** ws://HOST:PORT/ws of the WebSocket listener. */
    readonly wsUrl: string,
  ) {}

  /** Starts a server. */
  static async start(opts: FakeServerOptions = {}): Promise<FakeServer> {
    let fake!: FakeServer;
    const accepted = (c: PeerConn, destroy: () => void) => {
      fake.closers.push(destroy);
      fake.conns.push(c);
      const ws = fake.waiters;
      fake.waiters = [];
      ws.forEach((w) => w());
    };
    const server = net.createServer((socket) => {
      const c = new PeerConn({ write: (b) => socket.write(b), end: () => socket.end(), destroy: () => socket.destroy() });
      const read = peerReader(c, opts);
      socket.on("error", () => {});
      socket.on("data", (chunk: Buffer) => read(chunk));
      accepted(c, () => socket.destroy());
    });
    server.listen(0, "127.0.0.1");
    const wss = new WebSocketServer({
      host: "127.0.0.1",
      port: 0,
      path: "/ws",
      handleProtocols: (protocols) => (protocols.has("calc.v1") ? "calc.v1" : false),
    });
    wss.on("connection", (ws: WebSocket) => {
      const c = new PeerConn({ write: (b) => ws.send(b), end: () => ws.close(1000), destroy: () => ws.terminate() });
      const read = peerReader(c, opts);
      ws.on("error", () => {});
      ws.on("message", (data: Buffer) => read(data));
      accepted(c, () => ws.terminate());
    });
    await Promise.all([once(server, "listening"), once(wss, "listening")]);
    const port = (server.address() as net.AddressInfo).port;
    const wsPort = (wss.address() as net.AddressInfo).port;
    fake = new FakeServer(server, wss, `127.0.0.1:${port}`, `ws://127.0.0.1:${wsPort}/ws`);
    return fake;
  }

  /** Resolves with the n-th accepted connection (0-based), over either carrier. */
  async conn(n = 0): Promise<PeerConn> {
    while (this.conns.length <= n) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    return this.conns[n];
  }

  async close(): Promise<void> {
    for (const close of this.closers) {
      close();
    }
    await Promise.all([
      new Promise<void>((resolve) => this.server.close(() => resolve())),
      new Promise<void>((resolve) => this.wss.close(() => resolve())),
    ]);
  }
}
