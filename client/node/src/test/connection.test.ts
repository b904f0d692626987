import * as net from "node:net";
import { test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import {
  CalculateRequestSchema,
  CalculateResponseSchema,
  CalculatorService,
  EvaluateRequestSchema,
  Operator,
} from "../gen/calculator/v1/calculator_pb.js";
import { BadRequestSchema } from "../gen/google/rpc/error_details_pb.js";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { CalcError } from "../errors.js";
import { WebSocket } from "ws";
import type { GoawayInfo } from "../core/connection.js";
import { CalcTcpConnection, type TcpConnectionOptions } from "../tcp/connection.js";
import { createTcpTransport } from "../tcp/transport.js";
import { encodeSettings } from "../wire/control.js";
import { Flags, FrameKind } from "../wire/frame.js";
import { decodeMessage, encodeMessage } from "../wire/message.js";
import { CalcWebSocketConnection, type WebSocketConstructor } from "../ws/connection.js";
import { createWebSocketTransport } from "../ws/transport.js";
import { FakeServer, type FakeServerOptions } from "./fake-server.js";

// Every test runs over both carriers of the one connection core: a TCP
// socket (CalcTcpConnection) and a WebSocket (CalcWebSocketConnection, with
// the ws package's WebSocket standing in for a browser's).
type Conn = CalcTcpConnection | CalcWebSocketConnection;
const WS = WebSocket as unknown as WebSocketConstructor;
const carriers = {
  tcp: {
    connect: (s: FakeServer, o: TcpConnectionOptions = {}): Promise<Conn> => CalcTcpConnection.connect(s.address, o),
    transport: (s: FakeServer) => createTcpTransport({ address: s.address }),
  },
  ws: {
    connect: (s: FakeServer, o: TcpConnectionOptions = {}): Promise<Conn> => CalcWebSocketConnection.connect(s.wsUrl, { ...o, WebSocket: WS }),
    transport: (s: FakeServer) => createWebSocketTransport({ url: s.wsUrl, WebSocket: WS }),
  },
};
type Carrier = (typeof carriers)[keyof typeof carriers];

/** Registers fn as a test over each carrier. */
function both(name: string, fn: (c: Carrier) => Promise<void>): void {
  for (const [label, c] of Object.entries(carriers)) {
    test(`${name} [${label}]`, () => fn(c));
  }
}

/** Resolves with the error conn reports when it ends ('close' event, onClose). */
function closed(conn: Conn): Promise<CalcError | undefined> {
  return new Promise((resolve) => {
    if (conn instanceof CalcTcpConnection) {
      conn.once("close", resolve);
    } else {
      conn.onClose = resolve;
    }
  });
}

/** Calls fn with each GOAWAY conn reports. */
function onGoaway(conn: Conn, fn: (g: GoawayInfo) => void): void {
  if (conn instanceof CalcTcpConnection) {
    conn.on("goaway", fn);
  } else {
    conn.onGoaway = fn;
  }
}

const CALC = "/calculator.v1.CalculatorService/Calculate";
const STREAM = "/calculator.v1.CalculatorService/CalculateStream";
const req = (lhs: number) => toBinary(CalculateRequestSchema, create(CalculateRequestSchema, { operator: Operator.ADD, lhs: BigInt(lhs), rhs: 1n }));
const res = (v: number) => toBinary(CalculateResponseSchema, create(CalculateResponseSchema, { result: BigInt(v) }));
const result = (b: Uint8Array) => Number(fromBinary(CalculateResponseSchema, b).result);

async function withServer(c: Carrier, fn: (s: FakeServer, conn: Conn) => Promise<void>, opts: FakeServerOptions = {}): Promise<void> {
  const s = await FakeServer.start(opts);
  const conn = await c.connect(s, { cancelGraceMs: 200 });
  try {
    await fn(s, conn);
  } finally {
    conn.destroy();
    await s.close();
  }
}

both("replies are paired by id, in any order; refs bind on first use", (c) =>
  withServer(c, async (s, conn) => {
    const p = [1, 2, 3].map((i) => conn.unary(CALC, req(i)));
    const peer = await s.conn();
    const reqs = await Promise.all([1, 2, 3].map((id) => peer.next((f) => f.kind === FrameKind.REQUEST && f.id === id)));
    assert.equal(reqs[0].header?.methodName, CALC);
    assert.equal(reqs[0].flags & Flags.METHOD_NAME, Flags.METHOD_NAME);
    assert.equal(reqs[1].header?.methodName, undefined, "later calls send the ref alone");
    assert.equal(reqs[2].header?.methodRef, reqs[0].header?.methodRef);
    peer.respond(3, res(30));
    peer.respond(1, res(10));
    peer.respond(2, res(20));
    assert.deepEqual((await Promise.all(p)).map(result), [10, 20, 30]);
  }));

both("a ref is bound again after UNIMPLEMENTED", (c) =>
  withServer(c, async (s, conn) => {
    const m = "/calculator.v1.CalculatorService/Nope";
    const first = conn.unary(m, new Uint8Array());
    const peer = await s.conn();
    const r1 = await peer.next((f) => f.id === 1);
    peer.status(1, { code: Code.Unimplemented, message: "unknown method" });
    await assert.rejects(first, (e: CalcError) => e.code === Code.Unimplemented && e.source === "server");
    const second = conn.unary(m, new Uint8Array());
    const r2 = await peer.next((f) => f.id === 2);
    assert.equal(r1.header?.methodName, m);
    assert.equal(r2.header?.methodName, m, "the name is sent again");
    peer.status(2, { code: Code.Unimplemented, message: "unknown method" });
    await assert.rejects(second);
  }));

both("status details decode like gRPC's", (c) =>
  withServer(c, async (s, conn) => {
    const p = conn.unary(CALC, req(1));
    const peer = await s.conn();
    await peer.next((f) => f.id === 1);
    const detail = anyPack(BadRequestSchema, create(BadRequestSchema, { fieldViolations: [{ field: "rhs", description: "zero" }] }));
    peer.status(1, { code: Code.InvalidArgument, message: "division by zero: 1 / 0", details: [detail] });
    await assert.rejects(p, (e: CalcError) => {
      assert.equal(e.code, Code.InvalidArgument);
      assert.equal(e.rawMessage, "division by zero: 1 / 0");
      assert.equal(e.findDetails(BadRequestSchema)[0].fieldViolations[0].field, "rhs");
      return true;
    });
  }));

both("GOAWAY fails calls above the last id (safe to retry) and new calls; others still complete", (c) =>
  withServer(c, async (s, conn) => {
    const goaways: number[][] = [];
    onGoaway(conn, (g) => goaways.push(g.failedIds));
    const calls = [1, 2, 3].map((i) => conn.unary(CALC, req(i)));
    const peer = await s.conn();
    await peer.next((f) => f.id === 3);
    peer.goaway(1, { code: 0, message: "server shutting down" });
    for (const p of calls.slice(1)) {
      await assert.rejects(p, (e: CalcError) => e.code === Code.Unavailable && e.safeToRetry);
    }
    await assert.rejects(conn.unary(CALC, req(4)), (e: CalcError) => e.code === Code.Unavailable && e.safeToRetry);
    peer.respond(1, res(2));
    assert.equal(result(await calls[0]), 2);
    assert.deepEqual(goaways, [[2, 3]]);
    assert.equal(conn.isOpen, false);
  }));

both("a closed connection fails every pending call with UNAVAILABLE", (c) =>
  withServer(c, async (s, conn) => {
    const p = conn.unary(CALC, req(1));
    const st = conn.stream(STREAM);
    const peer = await s.conn();
    await peer.next((f) => f.id === 2);
    peer.destroy();
    await assert.rejects(p, (e: CalcError) => e.code === Code.Unavailable && !e.safeToRetry);
    await assert.rejects(async () => {
      for await (const _ of st) {
        // nothing arrives
      }
    }, (e: CalcError) => e.code === Code.Unavailable);
  }));

both("a server that ends the stream mid-frame fails the calls with UNAVAILABLE", (c) =>
  withServer(c, async (s, conn) => {
    const ended = closed(conn);
    const p = conn.unary(CALC, req(1));
    const peer = await s.conn();
    await peer.next((f) => f.id === 1);
    peer.writeRaw(Uint8Array.of(0, 0, 0, 8, FrameKind.RESPONSE, 0, 0));
    peer.end();
    await assert.rejects(p, (e: CalcError) => e.code === Code.Unavailable && /mid-frame/.test(e.rawMessage) && !e.safeToRetry);
    assert.equal((await ended)?.code, Code.Unavailable);
    assert.equal(conn.isOpen, false);
  }));

both("close() lets the calls in flight finish, refuses new ones, then ends the connection", (c) =>
  withServer(c, async (s, conn) => {
    const p = conn.unary(CALC, req(1));
    const peer = await s.conn();
    await peer.next((f) => f.id === 1);
    const closing = conn.close();
    assert.equal(conn.isOpen, false);
    await assert.rejects(conn.unary(CALC, req(2)), (e: CalcError) => e.code === Code.Unavailable && e.safeToRetry);
    peer.respond(1, res(2));
    assert.equal(result(await p), 2);
    if (conn instanceof CalcTcpConnection) {
      peer.end(); // the server answers the client's FIN with its own
    }
    await closing;
    assert.equal(conn.inFlight, 0);
  }));

both("the client answers a server PING with PONG, and pings the server", (c) =>
  withServer(c, async (s, conn) => {
    const peer = await s.conn();
    peer.send(FrameKind.PING, 0, 0, Uint8Array.of(9, 8, 7));
    const pong = await peer.next((f) => f.kind === FrameKind.PONG);
    assert.deepEqual([...pong.payload], [9, 8, 7]);
    const rtt = conn.ping(Uint8Array.of(1, 2));
    const ping = await peer.next((f) => f.kind === FrameKind.PING);
    peer.send(FrameKind.PONG, 0, 0, ping.payload);
    assert.ok((await rtt) >= 0);
  }));

both("deadline: sent as a budget, enforced locally, then CANCEL", (c) =>
  withServer(c, async (s, conn) => {
    const started = performance.now();
    const p = conn.unary(CALC, req(1), { timeoutMs: 100 });
    const peer = await s.conn();
    const r = await peer.next((f) => f.id === 1);
    assert.equal(r.flags & Flags.DEADLINE, Flags.DEADLINE);
    assert.ok(r.header!.timeoutMicros! > 90_000 && r.header!.timeoutMicros! <= 100_000);
    await assert.rejects(p, (e: CalcError) => e.code === Code.DeadlineExceeded);
    assert.ok(performance.now() - started >= 95);
    await peer.next((f) => f.kind === FrameKind.CANCEL && f.id === 1);
  }));

both("abort sends CANCEL and the call ends with the server's answer, or locally after the grace", (c) =>
  withServer(c, async (s, conn) => {
    const ac = new AbortController();
    const p = conn.unary(CALC, req(1), { signal: ac.signal });
    const peer = await s.conn();
    await peer.next((f) => f.id === 1);
    ac.abort();
    await peer.next((f) => f.kind === FrameKind.CANCEL && f.id === 1);
    peer.status(1, { code: Code.Canceled, message: "context canceled" });
    await assert.rejects(p, (e: CalcError) => e.code === Code.Canceled && e.source === "server");

    const ac2 = new AbortController();
    const p2 = conn.unary(CALC, req(2), { signal: ac2.signal });
    await peer.next((f) => f.id === 2);
    ac2.abort(); // the server never answers: cancelGraceMs (200 ms) later the client gives up
    await assert.rejects(p2, (e: CalcError) => e.code === Code.Canceled && e.source === "client");
  }));

both("large messages go compressed; compressed answers are decoded; bombs are refused", (c) =>
  withServer(c, async (s, conn) => {
    const expr = toBinary(EvaluateRequestSchema, create(EvaluateRequestSchema, { expression: "1 + ".repeat(200) + "1" }));
    const p = conn.unary("/calculator.v1.CalculatorService/Evaluate", expr);
    const peer = await s.conn();
    const r = await peer.next((f) => f.id === 1);
    assert.equal(r.flags & Flags.COMPRESSED, Flags.COMPRESSED);
    assert.deepEqual(Buffer.from(decodeMessage(r.message!, r.flags)), Buffer.from(expr));
    const big = encodeMessage(new Uint8Array(5000).fill(0x0a), 256);
    peer.respond(1, big.bytes, big.flags);
    assert.equal((await p).length, 5000);

    const q = conn.unary(CALC, req(1));
    await peer.next((f) => f.id === 2);
    peer.respond(2, Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x04, 0x00, 0x61), Flags.COMPRESSED);
    await assert.rejects(q, (e: CalcError) => e.code === Code.ResourceExhausted);
  }));

both("the server's settings bound what the client sends", (c) =>
  withServer(
    c,
    async (_s, conn) => {
      assert.equal(conn.settings.MAX_MESSAGE_SIZE, 10);
      await assert.rejects(conn.unary(CALC, new Uint8Array(11)), (e: CalcError) => e.code === Code.ResourceExhausted);
    },
    { settings: { MAX_MESSAGE_SIZE: 10 } },
  ));

both("a refused connection reports the GOAWAY's status", async (c) => {
  const s = await FakeServer.start({
    handshake: (c) => c.goaway(0, { code: Code.ResourceExhausted, message: "too many connections" }),
  });
  try {
    await assert.rejects(c.connect(s), (e: CalcError) => e.code === Code.ResourceExhausted && e.rawMessage === "too many connections");
  } finally {
    await s.close();
  }
});

both("streaming: REQUEST without message, MESSAGEs, HALF_CLOSE, metadata; typed client via the transport", async (c) => {
  const s = await FakeServer.start({ handshake: (c) => c.send(FrameKind.SETTINGS, 0, 0, encodeSettings({})) });
  const transport = c.transport(s);
  try {
    const client = createClient(CalculatorService, transport);
    async function* input() {
      yield { id: 1n, calculation: { operator: Operator.ADD, lhs: 1n, rhs: 2n } };
      yield { id: 2n, calculation: { operator: Operator.ADD, lhs: 3n, rhs: 4n } };
    }
    const responses = client.calculateStream(input(), { headers: { authorization: "Bearer t", "trace-bin": "AAE=" } });
    const peer = await s.conn();
    const r = await peer.next((f) => f.kind === FrameKind.REQUEST);
    assert.equal(r.message!.length, 0);
    assert.deepEqual(
      r.header!.metadata!.map(([k, v]) => [k, Buffer.from(v).toString("hex")]),
      [
        ["authorization", Buffer.from("Bearer t").toString("hex")],
        ["trace-bin", "0001"],
      ],
    );
    await peer.next((f) => f.kind === FrameKind.HALF_CLOSE && f.id === r.id);
    const msgs = peer.frames.filter((f) => f.kind === FrameKind.MESSAGE);
    assert.equal(msgs.length, 2);
    // Echo back results, then OK.
    peer.send(FrameKind.MESSAGE, 0, r.id, Uint8Array.of(0x08, 0x01, 0x10, 0x03));
    peer.send(FrameKind.MESSAGE, 0, r.id, Uint8Array.of(0x08, 0x02, 0x10, 0x07));
    peer.status(r.id, { code: 0 });
    const got = [];
    for await (const m of responses) {
      got.push([m.id, m.outcome.value]);
    }
    assert.deepEqual(got, [
      [1n, 3n],
      [2n, 7n],
    ]);
  } finally {
    await transport.close().catch(() => {});
    await s.close();
  }
});

test("a server that resets the connection before SETTINGS: the error names the address dialled", async () => {
  // A reset socket no longer knows its peer's address; the message must still say where it was connecting.
  const server = net.createServer((s) => s.resetAndDestroy());
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as net.AddressInfo;
  try {
    for (let i = 0; i < 5; i++) {
      await assert.rejects(CalcTcpConnection.connect(`127.0.0.1:${port}`, { connectTimeoutMs: 5000 }), (e: CalcError) => {
        assert.equal(e.code, Code.Unavailable);
        assert.ok(e.rawMessage.startsWith(`connecting to 127.0.0.1:${port}: `), e.rawMessage);
        return true;
      });
    }
  } finally {
    await new Promise((r) => server.close(r));
  }
});
