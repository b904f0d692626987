// CalcTcpChannel against scripted fake servers: which calls are retried
// (GOAWAY past the call's id: at once, on another connection; a lost
// connection: only with retryIdempotent), within one deadline and
// maxAttempts; its states; the backoff numbers.

import { test } from "node:test";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { CalculateRequestSchema, CalculateResponseSchema, Operator } from "../gen/calculator/v1/calculator_pb.js";
import { CalcError } from "../errors.js";
import { backoffDelay, backoffWithDefaults, CONNECTION_BACKOFF, RETRY_BACKOFF } from "../tcp/backoff.js";
import { CalcTcpChannel, parseEndpoints, type ConnectivityState, type TcpChannelOptions } from "../tcp/channel.js";
import { FrameKind } from "../wire/frame.js";
import { FakeServer, type PeerConn, type ReceivedFrame } from "./fake-server.js";

const CALC = "/calculator.v1.CalculatorService/Calculate";
const STREAM = "/calculator.v1.CalculatorService/CalculateStream";
const FAST: TcpChannelOptions = { backoff: { baseDelayMs: 10, maxDelayMs: 100 }, retryBackoff: { baseDelayMs: 5, maxDelayMs: 20 }, cancelGraceMs: 200 };
const req = (lhs: number) => toBinary(CalculateRequestSchema, create(CalculateRequestSchema, { operator: Operator.ADD, lhs: BigInt(lhs), rhs: 1n }));
const res = (v: number) => toBinary(CalculateResponseSchema, create(CalculateResponseSchema, { result: BigInt(v) }));
const result = (b: Uint8Array) => Number(fromBinary(CalculateResponseSchema, b).result);
const isRequest = (f: ReceivedFrame) => f.kind === FrameKind.REQUEST;

/** Two fake servers and a channel over both, every endpoint READY. */
async function pair(opts: TcpChannelOptions = {}): Promise<{ a: FakeServer; b: FakeServer; ch: CalcTcpChannel; done: () => Promise<void> }> {
  const [a, b] = await Promise.all([FakeServer.start(), FakeServer.start()]);
  const ch = new CalcTcpChannel(`${a.address}, ${b.address}`, { ...FAST, ...opts });
  ch.connect();
  for (let i = 0; !ch.endpoints().every((e) => e.state === "READY"); i++) {
    assert.ok(i < 1000, `endpoints not READY: ${JSON.stringify(ch.endpoints())}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    a,
    b,
    ch,
    done: async () => {
      await ch.close();
      await Promise.all([a.close(), b.close()]);
    },
  };
}

/** Resolves with whichever of the servers' first connections receives a REQUEST first. */
function firstRequest(servers: FakeServer[]): Promise<{ server: FakeServer; peer: PeerConn; frame: ReceivedFrame }> {
  return Promise.race(servers.map((server) => server.conn().then((peer) => peer.next(isRequest).then((frame) => ({ server, peer, frame })))));
}

test("a call above a GOAWAY's last id is made again on another connection at once, without retryIdempotent", async () => {
  const { a, b, ch, done } = await pair();
  try {
    const p = ch.unary(CALC, req(1), { timeoutMs: 5000 });
    const first = await firstRequest([a, b]);
    const other = first.server === a ? b : a;
    first.peer.goaway(first.frame.id - 1, { code: 0, message: "server shutting down" });
    const peer = await other.conn();
    const again = await peer.next(isRequest);
    assert.deepEqual(Buffer.from(again.message!), Buffer.from(first.frame.message!));
    peer.respond(again.id, res(2));
    assert.equal(result(await p), 2);
  } finally {
    await done();
  }
});

test("a call lost with its connection fails UNAVAILABLE; with retryIdempotent it is made again", async () => {
  for (const retryIdempotent of [false, true]) {
    const { a, b, ch, done } = await pair({ retryIdempotent });
    try {
      const p = ch.unary(CALC, req(1), { timeoutMs: 5000 });
      const first = await firstRequest([a, b]);
      const other = first.server === a ? b : a;
      first.peer.destroy();
      if (!retryIdempotent) {
        await assert.rejects(p, (e: CalcError) => e.code === Code.Unavailable && !e.safeToRetry);
        assert.equal((await other.conn()).frames.filter(isRequest).length, 0, "not retried");
        continue;
      }
      const peer = await other.conn();
      const again = await peer.next(isRequest);
      peer.respond(again.id, res(2));
      assert.equal(result(await p), 2);
    } finally {
      await done();
    }
  }
});

test("maxAttempts bounds the attempts of a call", async () => {
  const s = await FakeServer.start();
  const ch = new CalcTcpChannel(s.address, { ...FAST, maxAttempts: 3 });
  try {
    const p = ch.unary(CALC, req(1), { timeoutMs: 10_000 });
    for (let i = 0; i < 3; i++) {
      const peer = await s.conn(i);
      const f = await peer.next(isRequest);
      peer.goaway(f.id - 1, { code: 0, message: `goaway ${i}` });
    }
    await assert.rejects(p, (e: CalcError) => e.code === Code.Unavailable && e.safeToRetry && /goaway 2/.test(e.rawMessage));
    // The next call runs on a new connection, and it is the only request there.
    const q = ch.unary(CALC, req(5), { timeoutMs: 10_000 });
    const peer = await s.conn(3);
    const f = await peer.next(isRequest);
    peer.respond(f.id, res(6));
    assert.equal(result(await q), 6);
    assert.equal(peer.frames.filter(isRequest).length, 1);
  } finally {
    await ch.close();
    await s.close();
  }
});

test("a retry runs within the call's one deadline", async () => {
  const { a, b, ch, done } = await pair();
  try {
    const p = ch.unary(CALC, req(1), { timeoutMs: 2000 });
    const first = await firstRequest([a, b]);
    const other = first.server === a ? b : a;
    await new Promise((r) => setTimeout(r, 50));
    first.peer.goaway(0, { code: 0, message: "bye" });
    const again = await (await other.conn()).next(isRequest);
    const t1 = first.frame.header!.timeoutMicros!;
    const t2 = again.header!.timeoutMicros!;
    assert.ok(t1 <= 2_000_000 && t2 < t1 - 25_000, `budgets ${t1} then ${t2} µs: the retry must get what is left`);
    // The other server never answers: the call ends at its deadline.
    await assert.rejects(p, (e: CalcError) => e.code === Code.DeadlineExceeded);
  } finally {
    await done();
  }
});

test("states: IDLE, CONNECTING, READY; TRANSIENT_FAILURE fails fast; SHUTDOWN after close", async () => {
  const s = await FakeServer.start();
  const ch = new CalcTcpChannel([s.address], FAST);
  const states: ConnectivityState[] = [];
  ch.on("state", (st: ConnectivityState) => states.push(st));
  assert.equal(ch.getState(), "IDLE");
  const conn = await ch.connection({ timeoutMs: 5000 });
  assert.equal(ch.getState(), "READY");
  assert.ok(conn.isOpen);
  await s.close(); // the server goes away, and nothing listens on its port any more
  while (ch.getState() !== "TRANSIENT_FAILURE") {
    await ch.waitForStateChange(ch.getState(), { timeoutMs: 5000 });
  }
  assert.match(ch.endpoints()[0].lastError!.rawMessage, /^connecting to 127\.0\.0\.1:\d+: /);
  await assert.rejects(ch.unary(CALC, req(1), { timeoutMs: 5000 }), (e: CalcError) => e.code === Code.Unavailable && /^no server ready: /.test(e.rawMessage));
  await assert.rejects(ch.unary(CALC, req(1), { timeoutMs: 50, waitForReady: true }), (e: CalcError) => e.code === Code.DeadlineExceeded);
  await ch.close();
  assert.equal(ch.getState(), "SHUTDOWN");
  await assert.rejects(ch.unary(CALC, req(1)), (e: CalcError) => e.code === Code.Canceled);
  assert.deepEqual(
    states.filter((st, i) => i === 0 || states[i - 1] !== st),
    ["CONNECTING", "READY", "CONNECTING", "TRANSIENT_FAILURE", "SHUTDOWN"],
  );
});

test("a waiting call ends when its signal aborts or the channel closes", async () => {
  const s = await FakeServer.start();
  const addr = s.address;
  await s.close();
  const ch = new CalcTcpChannel(addr, { ...FAST, waitForReady: true });
  const ac = new AbortController();
  const p = ch.unary(CALC, req(1), { signal: ac.signal });
  const q = ch.unary(CALC, req(1));
  ac.abort();
  await assert.rejects(p, (e: CalcError) => e.code === Code.Canceled);
  const ac2 = new AbortController();
  const w = ch.waitForStateChange(ch.getState(), { signal: ac2.signal });
  ac2.abort();
  await assert.rejects(w, (e: CalcError) => e.code === Code.Canceled);
  await ch.close();
  await assert.rejects(q, (e: CalcError) => e.code === Code.Canceled && e.rawMessage === "channel closed");
});

test("streams open on a READY connection", async () => {
  const { a, b, ch, done } = await pair();
  try {
    const st = await ch.stream(STREAM, { timeoutMs: 5000 });
    const first = await firstRequest([a, b]);
    assert.equal(first.frame.message!.length, 0);
    st.closeSend();
    first.peer.status(first.frame.id, { code: 0 });
    const got = [];
    for await (const m of st) {
      got.push(m);
    }
    assert.deepEqual(got, []);
  } finally {
    await done();
  }
});

test("endpoints: a list or an array, duplicates dropped; bad ones are INVALID_ARGUMENT", () => {
  assert.deepEqual(parseEndpoints("127.0.0.1:1, [::1]:2,127.0.0.1:1"), [
    { host: "127.0.0.1", port: 1 },
    { host: "::1", port: 2 },
  ]);
  assert.deepEqual(parseEndpoints(["localhost:3"]), [{ host: "localhost", port: 3 }]);
  for (const bad of ["", " , ", "localhost", "a:b"]) {
    assert.throws(() => parseEndpoints(bad), (e: CalcError) => e.code === Code.InvalidArgument, bad);
  }
});

test("backoff: gRPC's numbers, jitter bounds, cap", () => {
  const b = backoffWithDefaults(undefined, CONNECTION_BACKOFF);
  assert.deepEqual(b, { baseDelayMs: 1000, multiplier: 1.6, jitter: 0.2, maxDelayMs: 120_000 });
  assert.deepEqual(
    [0, 1, 2, 3].map((n) => Math.round(backoffDelay(b, n, 0.5))),
    [1000, 1600, 2560, 4096],
  );
  assert.equal(backoffDelay(b, 100, 0.5), 120_000);
  assert.equal(Math.round(backoffDelay(b, 0, 0)), 800);
  assert.ok(backoffDelay(b, 0, 0.999_999) < 1200 && backoffDelay(b, 0, 0.999_999) > 1199);
  assert.deepEqual(backoffWithDefaults({ baseDelayMs: 5 }, RETRY_BACKOFF), { baseDelayMs: 5, multiplier: 1.6, jitter: 0.2, maxDelayMs: 1000 });
  assert.throws(() => backoffWithDefaults({ baseDelayMs: 0 }, RETRY_BACKOFF), RangeError);
  assert.throws(() => backoffWithDefaults({ multiplier: 0.5 }, RETRY_BACKOFF), RangeError);
  assert.throws(() => new CalcTcpChannel("127.0.0.1:1", { maxAttempts: 0 }), RangeError);
});
