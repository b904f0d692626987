#!/usr/bin/env node
// The Node load client (scripts/bench-langs.sh runs it through run-bench.sh):
//
//   node dist/bench.js --transport tcp|grpc --addr HOST:PORT --concurrency N --duration SECONDS [--warmup SECONDS]
//
// One connection (raw TCP: this package's transport over one CalcTcpChannel
// to one endpoint, so one connection; gRPC: connect-node's gRPC transport,
// one HTTP/2 session), N calls in flight at all times (N async loops, each
// awaiting its call before making the next: N=1 is strictly sequential),
// unary Calculate(ADD, lhs=i, rhs=1) with every answer checked (result ==
// lhs+1). It warms up for --warmup seconds (default 1, not counted), then
// counts the calls that complete within --duration seconds; at the deadline
// it stops making calls and waits at most 5 s for those in flight (their
// failures still count as errors). It prints exactly one line of JSON on
// stdout:
//
//   {"lang":"node","transport":"tcp","concurrency":64,"calls":123456,"errors":0,"seconds":5.001,
//    "calls_per_sec":24687.1,"p50_us":2510.0,"p99_us":6100.0}
//
// and exits 0 when errors == 0 and calls > 0, else 1. Latencies are kept in
// a reservoir sample (Algorithm R) of 2^18 calls for p50 and p99.
//
// It is a program of this repository, not part of the package's API
// (package.json's exports do not name it).

import { createClient, type Client } from "@connectrpc/connect";
import { CalculatorService, Operator } from "./gen/calculator/v1/calculator_pb.js";
import { createCalcGrpcTransport } from "./grpc.js";
import { createTcpTransport } from "./tcp/transport.js";

interface Args {
  transport: "tcp" | "grpc";
  addr: string;
  concurrency: number;
  duration: number;
  warmup: number;
}

function usage(msg: string): never {
  process.stderr.write(
    `${msg}\nusage: node dist/bench.js --transport tcp|grpc --addr HOST:PORT --concurrency N --duration SECONDS [--warmup SECONDS (default 1)]\n`,
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const v: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf("=");
    const [key, val] = eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, argv[++i]];
    if (!["--transport", "--addr", "--concurrency", "--duration", "--warmup"].includes(key)) usage(`unknown argument ${a}`);
    if (val === undefined) usage(`${key} needs a value`);
    v[key.slice(2)] = val;
  }
  for (const k of ["transport", "addr", "concurrency", "duration"]) if (v[k] === undefined) usage(`--${k} is required`);
  if (v.transport !== "tcp" && v.transport !== "grpc") usage(`--transport must be tcp or grpc, not ${v.transport}`);
  const num = (k: string, min: number): number => {
    const n = Number(v[k]);
    if (!Number.isFinite(n) || n < min) usage(`--${k} must be a number >= ${min}, not ${v[k]}`);
    return n;
  };
  const concurrency = num("concurrency", 1);
  if (!Number.isInteger(concurrency)) usage(`--concurrency must be an integer, not ${v.concurrency}`);
  return {
    transport: v.transport,
    addr: v.addr,
    concurrency,
    duration: num("duration", 0.001),
    warmup: v.warmup === undefined ? 1 : num("warmup", 0),
  };
}

/** A uniform sample of at most cap values (Algorithm R). */
class Reservoir {
  private readonly samples: Float64Array;
  private n = 0;
  private seen = 0;
  constructor(cap: number) {
    this.samples = new Float64Array(cap);
  }
  add(x: number): void {
    this.seen++;
    if (this.n < this.samples.length) {
      this.samples[this.n++] = x;
      return;
    }
    const j = Math.floor(Math.random() * this.seen);
    if (j < this.samples.length) this.samples[j] = x;
  }
  /** The q-quantile (nearest rank) of the sample, 0 when empty. */
  quantile(q: number): number {
    if (this.n === 0) return 0;
    const s = this.samples.slice(0, this.n).sort();
    return s[Math.min(this.n - 1, Math.max(0, Math.ceil(q * this.n) - 1))];
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const args = parseArgs(process.argv.slice(2));

async function main(): Promise<void> {
  let close: () => Promise<void> = async () => {};
  let client: Client<typeof CalculatorService>;
  if (args.transport === "tcp") {
    const transport = createTcpTransport({ address: args.addr });
    await transport.connection(); // connected before the clock starts
    close = () => transport.close();
    client = createClient(CalculatorService, transport);
  } else {
    client = createClient(CalculatorService, createCalcGrpcTransport({ address: args.addr }));
  }

  const lat = new Reservoir(1 << 18);
  let measuring = false; // completions count only while true
  let stopping = false; // no new calls once true
  let calls = 0;
  let errors = 0;
  let firstError: unknown;
  let next = 0n;

  const worker = async (): Promise<void> => {
    while (!stopping) {
      const lhs = next++;
      const t0 = performance.now();
      let ok = false;
      try {
        const res = await client.calculate({ operator: Operator.ADD, lhs, rhs: 1n });
        ok = res.result === lhs + 1n;
        if (!ok) firstError ??= new Error(`${lhs} + 1 = ${res.result}`);
      } catch (e) {
        firstError ??= e;
      }
      const t1 = performance.now();
      if (!ok) {
        errors++; // during the warm-up too: an error is an error
      } else if (measuring) {
        calls++;
        lat.add((t1 - t0) * 1000);
      }
    }
  };

  const workers = Array.from({ length: args.concurrency }, worker);
  await sleep(args.warmup * 1000);
  measuring = true;
  const start = performance.now();
  await sleep(args.duration * 1000);
  measuring = false;
  stopping = true;
  const seconds = (performance.now() - start) / 1000;
  const drained = await Promise.race([Promise.all(workers).then(() => true), sleep(5000).then(() => false)]);
  if (!drained) {
    process.stderr.write("bench: calls still in flight 5 s after the deadline\n");
    errors++;
  }
  if (firstError !== undefined) process.stderr.write(`bench: first error: ${String(firstError)}\n`);

  const round1 = (x: number) => Math.round(x * 10) / 10;
  const out = {
    lang: "node",
    transport: args.transport,
    concurrency: args.concurrency,
    calls,
    errors,
    seconds: Math.round(seconds * 1000) / 1000,
    calls_per_sec: round1(calls / seconds),
    p50_us: round1(lat.quantile(0.5)),
    p99_us: round1(lat.quantile(0.99)),
  };
  process.stdout.write(JSON.stringify(out) + "\n");
  await Promise.race([close(), sleep(1000)]);
  process.exit(errors === 0 && calls > 0 ? 0 : 1);
}

main().catch((e) => {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.stdout.write(
    JSON.stringify({ lang: "node", transport: args.transport, concurrency: args.concurrency, calls: 0, errors: 1, seconds: 0, calls_per_sec: 0, p50_us: 0, p99_us: 0 }) + "\n",
  );
  process.exit(1);
});
