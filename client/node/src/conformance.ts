#!/usr/bin/env node
// The Node conformance runner:
//
//   node dist/conformance.js --grpc HOST:PORT --tcp HOST:PORT [--ws URL] [--cases FILE] [--vectors FILE] [--verbose]
//     [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME] [--token TOKEN]
//
// Runs every case of testdata/conformance/cases.json over gRPC (connect-node)
// and over raw TCP (this package's client), and with --ws ws://HOST:PORT/ws
// over the browser WebSocket transport too (with the ws package's
// WebSocket, as Node 20 has none of its own), decodes every vector of
// testdata/wire/vectors.json, prints one line per failure and finally
// "N passed, N failed"; exits 1 if anything failed.
//
// With --tls (or any of --tls-ca, --tls-cert/--tls-key, --tls-server-name)
// both transports connect over TLS 1.3 (raw TCP: ALPN calc/1); --token, or
// the environment's CALC_TOKEN (which ps cannot show), is sent as
// "authorization: Bearer <token>" on every call.

import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { CalculatorService } from "./gen/calculator/v1/calculator_pb.js";
import { createCalcGrpcTransport } from "./grpc.js";
import { createTcpTransport } from "./tcp/transport.js";
import type { WebSocketConstructor } from "./ws/connection.js";
import { createWebSocketTransport, type WebSocketTransport } from "./ws/transport.js";
import { Mismatch, runCase, type TransportUnderTest } from "./conformance/cases.js";
import type { SecurityOptions } from "./security.js";
import { checkVector, type WireVector } from "./conformance/vectors.js";

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = resolve(here, "../../..");

interface Args {
  grpc: string;
  tcp: string;
  ws?: string;
  cases: string;
  vectors: string;
  verbose: boolean;
  security: SecurityOptions;
}

function usage(msg: string): never {
  process.stderr.write(
    `${msg}\nusage: node dist/conformance.js --grpc HOST:PORT --tcp HOST:PORT [--ws URL] [--cases FILE] [--vectors FILE] [--verbose]\n` +
      "  [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME] [--token TOKEN (default: env CALC_TOKEN)]\n",
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const a: Partial<Args> = {
    cases: resolve(repoRoot, "testdata/conformance/cases.json"),
    vectors: resolve(repoRoot, "testdata/wire/vectors.json"),
    verbose: false,
  };
  const sec: SecurityOptions = { token: process.env.CALC_TOKEN || undefined };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const [name, inline] = flag.includes("=") ? [flag.slice(0, flag.indexOf("=")), flag.slice(flag.indexOf("=") + 1)] : [flag, undefined];
    const value = () => inline ?? argv[++i] ?? usage(`${name} needs a value`);
    switch (name) {
      case "--grpc":
        a.grpc = value();
        break;
      case "--tcp":
        a.tcp = value();
        break;
      case "--ws":
        a.ws = value();
        break;
      case "--cases":
        a.cases = value();
        break;
      case "--vectors":
        a.vectors = value();
        break;
      case "-v":
      case "--verbose":
        a.verbose = true;
        break;
      case "--tls":
        sec.tls = inline === undefined ? true : inline !== "false";
        break;
      case "--tls-ca":
        sec.tlsCa = value();
        break;
      case "--tls-cert":
        sec.tlsCert = value();
        break;
      case "--tls-key":
        sec.tlsKey = value();
        break;
      case "--tls-server-name":
        sec.tlsServerName = value();
        break;
      case "--token":
        sec.token = value() || undefined;
        break;
      default:
        usage(`unknown argument ${flag}`);
    }
  }
  if (!a.grpc || !a.tcp) {
    usage("--grpc and --tcp are required");
  }
  if (Boolean(sec.tlsCert) !== Boolean(sec.tlsKey)) {
    usage("--tls-cert and --tls-key go together");
  }
  a.security = sec;
  return a as Args;
}

/** Rejects after ms unless p settles first. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Mismatch(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  // A call that fails before its response is read (calcd down, say) rejects
  // a promise nobody awaits yet; the case still fails when it reads, so do
  // not let Node's default handler kill the whole run.
  process.on("unhandledRejection", (e) => {
    process.stderr.write(`note: rejection not handled yet: ${(e as Error)?.message ?? e}\n`);
  });
  const casesFile = JSON.parse(readFileSync(args.cases, "utf8")) as { cases: Record<string, unknown>[] };
  const vectorsFile = JSON.parse(readFileSync(args.vectors, "utf8")) as { vectors: WireVector[] };
  let passed = 0;
  let failed = 0;
  const pass = (what: string) => {
    passed++;
    if (args.verbose) {
      console.log(`ok   ${what}`);
    }
  };
  const failure = (what: string, why: string) => {
    failed++;
    console.log(`FAIL ${what}: ${why.replace(/\n/g, "\n     ")}`);
  };

  // Wire vectors: decoded with this package's frame decoder.
  for (const v of vectorsFile.vectors) {
    const why = checkVector(v);
    if (why === undefined) {
      pass(`${v.name} [wire]`);
    } else {
      failure(`${v.name} [wire]`, why);
    }
  }

  // Conformance cases over both transports.
  const tcpTransport = createTcpTransport({ address: args.tcp, ...args.security });
  const transports: TransportUnderTest[] = [
    { name: "grpc", client: createClient(CalculatorService, createCalcGrpcTransport({ address: args.grpc, ...args.security })) },
    {
      name: "tcp",
      client: createClient(CalculatorService, tcpTransport),
      connectionId: () => tcpTransport.connection(),
    },
  ];
  let wsTransport: WebSocketTransport | undefined;
  if (args.ws) {
    // The ws package stands in for the browser's WebSocket (Node 20 has
    // none); the transport itself uses nothing but the standard API.
    const { WebSocket } = await import("ws");
    // A token rides in each call's metadata (a browser cannot set headers
    // on a WebSocket); TLS is the wss:// URL's, with the system's CAs.
    const token = args.security.token;
    wsTransport = createWebSocketTransport({
      url: args.ws,
      WebSocket: WebSocket as unknown as WebSocketConstructor,
      metadata: token ? { authorization: `Bearer ${token}` } : undefined,
    });
    const t = wsTransport;
    transports.push({ name: "ws", client: createClient(CalculatorService, t), connectionId: () => t.connection() });
  }
  for (const t of transports) {
    for (const c of casesFile.cases) {
      const what = `${String(c.name)} [${t.name}]`;
      const limit = typeof c.count === "number" ? 60_000 : 20_000;
      try {
        await withTimeout(runCase(c, t), limit, "case");
        pass(what);
      } catch (e) {
        failure(what, e instanceof Mismatch ? e.message : `unexpected ${(e as Error)?.stack ?? e}`);
      }
    }
  }
  await withTimeout(tcpTransport.close(), 5000, "closing the raw TCP connection").catch(() => {});
  if (wsTransport) {
    await withTimeout(wsTransport.close(), 5000, "closing the WebSocket").catch(() => {});
  }

  console.log(`${passed} passed, ${failed} failed`);
  return failed > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    console.log("0 passed, 1 failed");
    process.exit(1);
  },
);
