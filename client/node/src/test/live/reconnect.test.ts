// The raw TCP channel against real calcd processes: it reconnects by itself
// after calcd is killed (SIGKILL) and started again on the same port, and it
// spreads calls over two calcds and carries on when one is killed. Loops are
// bounded in count and time; the backoff is shortened to milliseconds.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { Code, createClient, createContextValues, type Client } from "@connectrpc/connect";
import { CalculatorService, Operator } from "../../gen/calculator/v1/calculator_pb.js";
import { CalcError } from "../../errors.js";
import type { ConnectivityState } from "../../tcp/channel.js";
import { createTcpTransport, waitForReadyKey, type TcpTransport } from "../../tcp/transport.js";
import { Calcd } from "./calcd.js";

const FAST = { backoff: { baseDelayMs: 20, maxDelayMs: 200 }, retryBackoff: { baseDelayMs: 5, maxDelayMs: 50 }, connectTimeoutMs: 5000 };
const BOUND_MS = 20_000; // no wait below may take longer: past it the test fails rather than hangs

const servers: Calcd[] = [];
const transports: TcpTransport[] = [];
after(async () => {
  await Promise.all(transports.map((t) => t.close()));
  await Promise.all(servers.map((s) => s.kill()));
});

async function start(args: string[] = []): Promise<Calcd> {
  const s = await Calcd.start(args);
  servers.push(s);
  return s;
}

function transport(address: string, extra: object = {}): { t: TcpTransport; client: Client<typeof CalculatorService> } {
  const t = createTcpTransport({ address, ...FAST, ...extra });
  transports.push(t);
  return { t, client: createClient(CalculatorService, t) };
}

/** Resolves once pred holds for the channel's state, looking every 20 ms for at most BOUND_MS. */
async function until(t: TcpTransport, pred: (s: ConnectivityState) => boolean, what: string): Promise<void> {
  const end = performance.now() + BOUND_MS;
  while (!pred(t.channel.getState())) {
    assert.ok(performance.now() < end, `still ${t.channel.getState()} (${JSON.stringify(t.channel.endpoints())}) after ${BOUND_MS} ms, waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const add = (client: Client<typeof CalculatorService>, i: number) =>
  client.calculate({ operator: Operator.ADD, lhs: BigInt(i), rhs: 1n }, { timeoutMs: 5000 }).then((r) => Number(r.result));

test("after calcd is killed and started again on the same port, calls succeed again by themselves", async () => {
  const first = await start();
  const { t, client } = transport(first.tcp);
  const states: ConnectivityState[] = [t.channel.getState()];
  t.channel.on("state", (s: ConnectivityState) => states.push(s));
  for (let i = 0; i < 10; i++) {
    assert.equal(await add(client, i), i + 1);
  }
  assert.equal(t.channel.getState(), "READY");

  await first.kill("SIGKILL");
  await until(t, (s) => s === "TRANSIENT_FAILURE", "the channel to notice the server is gone");
  // Nothing can be reached: calls fail fast, saying why.
  // (Connection refused, mostly; now and then a reset, as the kernel tears down the old connections.)
  await assert.rejects(add(client, 0), (e: CalcError) => e.code === Code.Unavailable && e.rawMessage.startsWith(`no server ready: connecting to ${first.tcp}: `));
  // A call that asks to wait for a connection waits (within its deadline).
  const waiting = client.calculate({ operator: Operator.MULTIPLY, lhs: 6n, rhs: 7n }, { timeoutMs: BOUND_MS, contextValues: createContextValues().set(waitForReadyKey, true) });

  const second = await start(["--tcp-addr", first.tcp]);
  assert.equal(second.tcp, first.tcp);
  // Nobody calls: the channel reconnects on its own.
  await until(t, (s) => s === "READY", "the channel to reconnect");
  assert.equal((await waiting).result, 42n);
  for (let i = 0; i < 10; i++) {
    assert.equal(await add(client, i), i + 1);
  }
  assert.deepEqual(dedupe(states), ["IDLE", "CONNECTING", "READY", "CONNECTING", "TRANSIENT_FAILURE", "READY"]);
});

test("two servers share the calls round robin, and when one is killed the calls go on on the other", async () => {
  const [a, b] = await Promise.all([start(["--admin-addr", "127.0.0.1:0"]), start(["--admin-addr", "127.0.0.1:0"])]);
  const { t, client } = transport(`${a.tcp},${b.tcp}`, { retryIdempotent: true });
  t.channel.connect();
  await until(t, () => t.channel.endpoints().every((e) => e.state === "READY"), "both endpoints to be READY");
  for (let i = 0; i < 40; i++) {
    assert.equal(await add(client, i), i + 1);
  }
  assert.deepEqual([await a.handled("Calculate"), await b.handled("Calculate")], [20, 20], "round robin over two READY connections");

  // Calls in flight from 8 callers while a is killed: the ones a had taken
  // fail UNAVAILABLE and are retried (retryIdempotent) on b.
  let n = 0;
  const failures: string[] = [];
  const caller = async () => {
    for (let i = n++; i < 400; i = n++) {
      if (i === 100) {
        await a.kill("SIGKILL");
      }
      await add(client, i).then(
        (r) => r === i + 1 || failures.push(`call ${i}: ${r}`),
        (e: Error) => failures.push(`call ${i}: ${e.message}`),
      );
    }
  };
  await Promise.all(Array.from({ length: 8 }, caller));
  assert.deepEqual(failures, []);
  await until(t, () => t.channel.endpoints()[0].state === "TRANSIENT_FAILURE", "the killed server's endpoint to fail");
  assert.deepEqual(
    t.channel.endpoints().map((e) => e.state),
    ["TRANSIENT_FAILURE", "READY"],
  );
  const before = await b.handled("Calculate");
  for (let i = 0; i < 20; i++) {
    assert.equal(await add(client, i), i + 1);
  }
  assert.equal((await b.handled("Calculate")) - before, 20, "every call goes to the server left");
});

/** states without consecutive repeats. */
function dedupe(states: ConnectivityState[]): ConnectivityState[] {
  return states.filter((s, i) => i === 0 || states[i - 1] !== s);
}
