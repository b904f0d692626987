// Runs the conformance cases (testdata/conformance/cases.json) with a typed
// CalculatorService client; the same code runs over gRPC and raw TCP because
// both are connect-es clients. Every key of a case is checked or rejected.

import { create, equals, fromJson, type DescMessage, type DescMethod, type JsonValue, type MessageShape } from "@bufbuild/protobuf";
import { ConnectError, type Client } from "@connectrpc/connect";
import {
  CalculateStreamRequestSchema,
  CalculateStreamResponseSchema,
  CalculatorService,
  Operator,
  OperatorSchema,
  type CalculateStreamRequest,
  type CalculateStreamResponse,
} from "../gen/calculator/v1/calculator_pb.js";
import { CalcError, codeName, errorDetails } from "../errors.js";

type Obj = Record<string, unknown>;
export type CalcClient = Client<typeof CalculatorService>;

/** What a case runner needs to know about the transport under test. */
export interface TransportUnderTest {
  name: "grpc" | "tcp" | "ws";
  client: CalcClient;
  /** Returns an identity of the connection calls use now (for "one connection" checks). */
  connectionId?: () => Promise<unknown>;
}

class Mismatch extends Error {}
function fail(msg: string): never {
  throw new Mismatch(msg);
}

const CASE_KEYS: Record<string, string[]> = {
  unary: ["rpc", "request", "response", "error"],
  stream: ["rpc", "requests", "responses"],
  stream_generated: ["rpc", "count", "operator", "rhs"],
  stream_deadline: ["rpc", "timeout_ms", "error"],
  stream_cancel: ["rpc", "error"],
  concurrent: ["rpc", "count"],
};
const ERROR_KEYS = new Set(["code", "reason", "field", "offset", "message"]);

/** Per-call deadline for ordinary calls: generous, but a hang still ends. */
const CALL_TIMEOUT_MS = 15_000;

function methodOf(rpc: unknown): DescMethod {
  const m = CalculatorService.methods.find((x) => x.name === rpc);
  return m ?? fail(`unknown rpc ${JSON.stringify(rpc)}`);
}

function parse<D extends DescMessage>(schema: D, json: unknown, what: string): MessageShape<D> {
  try {
    return fromJson(schema, json as JsonValue);
  } catch (e) {
    fail(`${what} is not valid ${schema.typeName} JSON: ${(e as Error).message}`);
  }
}

/** Checks an error against a case's expected error object. */
export function checkError(err: unknown, want: Obj): void {
  for (const k of Object.keys(want)) {
    if (!ERROR_KEYS.has(k)) {
      fail(`error expectation has a key this runner does not know how to check: ${k}`);
    }
  }
  if (!(err instanceof ConnectError)) {
    fail(`expected ${String(want.code)}, got a non-RPC error: ${(err as Error)?.stack ?? err}`);
  }
  const got = codeName(err.code);
  if (got !== want.code) {
    fail(`expected code ${String(want.code)}, got ${got}: ${err.rawMessage}`);
  }
  const { errorInfo, badRequest } = errorDetails(err);
  if ("reason" in want && errorInfo?.reason !== want.reason) {
    fail(`expected ErrorInfo reason ${String(want.reason)}, got ${errorInfo ? JSON.stringify(errorInfo.reason) : "no ErrorInfo"}`);
  }
  if ("field" in want) {
    const fields = badRequest?.fieldViolations.map((v) => v.field);
    if (!fields || fields.length !== 1 || fields[0] !== want.field) {
      fail(`expected one BadRequest field violation on ${String(want.field)}, got ${fields ? JSON.stringify(fields) : "no BadRequest"}`);
    }
  }
  if ("offset" in want) {
    const off = errorInfo?.metadata["offset"];
    if (off !== String(want.offset)) {
      fail(`expected ErrorInfo metadata offset ${String(want.offset)}, got ${off === undefined ? "none" : JSON.stringify(off)}`);
    }
  }
  if ("message" in want && err.rawMessage !== want.message) {
    fail(`expected message ${JSON.stringify(want.message)}, got ${JSON.stringify(err.rawMessage)}`);
  }
}

/** A controllable request stream: push messages, end it, or leave it open. */
class RequestQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private closed = false;
  private waiter: (() => void) | undefined;
  private taken = 0;
  get takenCount(): number {
    return this.taken;
  }
  private drainedWaiters: Array<() => void> = [];

  push(...xs: T[]): void {
    this.items.push(...xs);
    this.wake();
  }
  end(): void {
    this.closed = true;
    this.wake();
  }
  /** Resolves once the transport has taken n messages from the queue. */
  taken_(n: number): Promise<void> {
    return new Promise((resolve) => {
      const check = () => (this.taken >= n ? resolve() : this.drainedWaiters.push(check));
      check();
    });
  }
  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      if (this.items.length > 0) {
        const x = this.items.shift()!;
        this.taken++;
        const ws = this.drainedWaiters;
        this.drainedWaiters = [];
        ws.forEach((w) => w());
        yield x;
        continue;
      }
      if (this.closed) {
        return;
      }
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
  }
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) {
    out.push(x);
  }
  return out;
}

function compareStream(got: CalculateStreamResponse[], want: CalculateStreamResponse[]): void {
  if (got.length !== want.length) {
    fail(`got ${got.length} stream responses, want ${want.length}`);
  }
  for (let i = 0; i < want.length; i++) {
    if (!equals(CalculateStreamResponseSchema, got[i], want[i])) {
      fail(`stream response ${i}: got ${describe(got[i])}, want ${describe(want[i])}`);
    }
  }
}

function describe(r: CalculateStreamResponse): string {
  const o = r.outcome;
  return `{id: ${r.id}, ${o.case === "result" ? `result: ${o.value}` : o.case === "error" ? `error: ${o.value.code} ${JSON.stringify(o.value.message)} field ${JSON.stringify(o.value.field)}` : "no outcome"}}`;
}

/** Runs one case over one transport; throws Mismatch (or anything) on failure. */
export async function runCase(c: Obj, t: TransportUnderTest): Promise<void> {
  const kind = c.kind as string;
  const allowed = CASE_KEYS[kind] ?? fail(`unknown case kind ${JSON.stringify(kind)}`);
  for (const k of Object.keys(c)) {
    if (k !== "name" && k !== "kind" && k !== "about" && !allowed.includes(k)) {
      fail(`case has a key this runner does not know how to check: ${k}`);
    }
  }
  const method = methodOf(c.rpc);
  const client = t.client as unknown as Record<string, (...args: unknown[]) => unknown>;
  const fn = client[method.localName];

  switch (kind) {
    case "unary": {
      if (method.methodKind !== "unary") {
        fail(`${method.name} is not unary`);
      }
      if ("response" in c === "error" in c) {
        fail("a unary case needs exactly one of response and error");
      }
      const req = parse(method.input, c.request, "request");
      let res: unknown;
      try {
        res = await fn(req, { timeoutMs: CALL_TIMEOUT_MS });
      } catch (e) {
        if ("error" in c) {
          checkError(e, c.error as Obj);
          return;
        }
        fail(`unexpected error: ${errText(e)}`);
      }
      if ("error" in c) {
        fail(`expected error ${JSON.stringify(c.error)}, got response ${JSON.stringify(res, bigintJson)}`);
      }
      const want = parse(method.output, c.response, "response");
      if (!equals(method.output, res as MessageShape<DescMessage>, want)) {
        fail(`response ${JSON.stringify(res, bigintJson)} differs from ${JSON.stringify(c.response)}`);
      }
      return;
    }

    case "stream": {
      const reqs = (c.requests as unknown[]).map((r, i) => parse(CalculateStreamRequestSchema, r, `request ${i}`));
      const want = (c.responses as unknown[]).map((r, i) => parse(CalculateStreamResponseSchema, r, `response ${i}`));
      const q = new RequestQueue<CalculateStreamRequest>();
      q.push(...reqs);
      q.end();
      const got = await collectStream(fn, q, { timeoutMs: CALL_TIMEOUT_MS });
      compareStream(got, want);
      return;
    }

    case "stream_generated": {
      const count = c.count as number;
      const op = (OperatorSchema.values.find((v) => v.name === c.operator) ?? fail(`unknown operator ${String(c.operator)}`)).number as Operator;
      const rhs = BigInt(c.rhs as string);
      const q = new RequestQueue<CalculateStreamRequest>();
      const want: CalculateStreamResponse[] = [];
      for (let i = 1; i <= count; i++) {
        q.push(create(CalculateStreamRequestSchema, { id: BigInt(i), calculation: { operator: op, lhs: BigInt(i), rhs } }));
        want.push(create(CalculateStreamResponseSchema, { id: BigInt(i), outcome: { case: "result", value: BigInt(i) * rhs } }));
      }
      q.end();
      const responses = fn(q, { timeoutMs: 30_000 }) as AsyncIterable<CalculateStreamResponse>;
      // Send everything before reading anything. If the transport cannot
      // take them (e.g. the call failed to start), reading tells why.
      let timer: NodeJS.Timeout | undefined;
      const allTaken = await Promise.race([
        q.taken_(count).then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 10_000))),
      ]);
      clearTimeout(timer);
      const got = await collectOrFail(responses);
      if (!allTaken) {
        fail(`the transport took only ${q.takenCount} of ${count} requests before the responses were read`);
      }
      compareStream(got, want);
      return;
    }

    case "stream_deadline": {
      const timeoutMs = c.timeout_ms as number;
      const q = new RequestQueue<CalculateStreamRequest>(); // never sends, never half-closes
      const started = performance.now();
      try {
        const got = await collect(fn(q, { timeoutMs }) as AsyncIterable<CalculateStreamResponse>);
        fail(`stream ended OK with ${got.length} responses; expected ${JSON.stringify(c.error)}`);
      } catch (e) {
        if (e instanceof Mismatch) {
          throw e;
        }
        checkError(e, c.error as Obj);
      } finally {
        q.end();
      }
      const elapsed = performance.now() - started;
      if (elapsed < timeoutMs * 0.9) {
        fail(`DEADLINE_EXCEEDED after ${elapsed.toFixed(0)} ms, before the ${timeoutMs} ms deadline`);
      }
      return;
    }

    case "stream_cancel": {
      const q = new RequestQueue<CalculateStreamRequest>();
      const ac = new AbortController();
      q.push(create(CalculateStreamRequestSchema, { id: 1n, calculation: { operator: Operator.ADD, lhs: 1n, rhs: 1n } }));
      const it = (fn(q, { signal: ac.signal, timeoutMs: CALL_TIMEOUT_MS }) as AsyncIterable<CalculateStreamResponse>)[Symbol.asyncIterator]();
      try {
        const first = await it.next();
        const want = create(CalculateStreamResponseSchema, { id: 1n, outcome: { case: "result", value: 2n } });
        if (first.done || !equals(CalculateStreamResponseSchema, first.value, want)) {
          fail(`first response: got ${first.done ? "end of stream" : describe(first.value)}, want ${describe(want)}`);
        }
        ac.abort();
        let next;
        try {
          next = await it.next();
        } catch (e) {
          checkError(e, c.error as Obj);
          if (e instanceof CalcError && e.source !== "server") {
            fail(`CANCELLED was made by the client: ${e.rawMessage}`);
          }
          return;
        }
        fail(`after cancel the stream went on: ${next.done ? "ended OK" : describe(next.value)}`);
      } finally {
        q.end();
      }
    }

    case "concurrent": {
      const count = c.count as number;
      const before = await t.connectionId?.();
      const calls: Promise<unknown>[] = [];
      for (let i = 1; i <= count; i++) {
        calls.push(fn({ operator: Operator.ADD, lhs: BigInt(i), rhs: BigInt(i) }, { timeoutMs: 30_000 }) as Promise<unknown>);
      }
      const settled = await Promise.allSettled(calls);
      const bad: string[] = [];
      settled.forEach((s, idx) => {
        const i = idx + 1;
        if (s.status === "rejected") {
          bad.push(`call ${i}: ${errText(s.reason)}`);
        } else if ((s.value as { result: bigint }).result !== BigInt(2 * i)) {
          bad.push(`call ${i}: result ${(s.value as { result: bigint }).result}, want ${2 * i}`);
        }
      });
      if (bad.length > 0) {
        fail(`${bad.length} of ${count} calls failed, first: ${bad.slice(0, 3).join("; ")}`);
      }
      const after = await t.connectionId?.();
      if (before !== after) {
        fail("the calls did not all run on one connection");
      }
      return;
    }
  }
}

async function collectStream(
  fn: (...args: unknown[]) => unknown,
  input: AsyncIterable<CalculateStreamRequest>,
  opts: object,
): Promise<CalculateStreamResponse[]> {
  return collectOrFail(fn(input, opts) as AsyncIterable<CalculateStreamResponse>);
}

async function collectOrFail(it: AsyncIterable<CalculateStreamResponse>): Promise<CalculateStreamResponse[]> {
  try {
    return await collect(it);
  } catch (e) {
    fail(`stream failed: ${errText(e)}`);
  }
}

function errText(e: unknown): string {
  if (e instanceof ConnectError) {
    return `${codeName(e.code)}: ${e.rawMessage}`;
  }
  return (e as Error)?.stack ?? String(e);
}

function bigintJson(_k: string, v: unknown): unknown {
  return typeof v === "bigint" ? v.toString() : v;
}

export { Mismatch };
