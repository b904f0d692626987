// TLS, mutual TLS and bearer tokens against a real calcd (built from this
// repository) started with --tls-cert/--tls-key, --tls-client-ca and
// --auth-tokens, and a plaintext calcd beside it. Every negative case must
// fail with its precise error well within the call's 1 s deadline (a
// DEADLINE_EXCEEDED would mean a hang), on both transports.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import * as tls from "node:tls";
import { ConnectError, type Client } from "@connectrpc/connect";
import { CalculatorService, Operator } from "../../gen/calculator/v1/calculator_pb.js";
import { codeName } from "../../errors.js";
import { createCalcGrpcClient } from "../../grpc.js";
import type { SecurityOptions } from "../../security.js";
import { createCalcTcpClient } from "../../tcp/client.js";
import { CalcTcpConnection } from "../../tcp/connection.js";
import type { TcpTransport } from "../../tcp/transport.js";
import { Calcd, makeCerts, tokenPolicy, type Certs } from "./calcd.js";

const DEADLINE_MS = 1000;
const ADD = { operator: Operator.ADD, lhs: 2n, rhs: 3n };

let certs: Certs; // the CA calcd trusts and serves from
let other: Certs; // another CA: a server certificate this client should not trust, a client certificate calcd should refuse
let token: string;
let secure: Calcd; // TLS, mTLS, --auth-tokens
let plain: Calcd;
const transports: TcpTransport[] = [];

before(async () => {
  [certs, other] = await Promise.all([makeCerts(), makeCerts()]);
  token = randomBytes(24).toString("base64url");
  [secure, plain] = await Promise.all([
    Calcd.start(["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey, "--tls-client-ca", certs.ca, "--auth-tokens", tokenPolicy(token)]),
    Calcd.start([]),
  ]);
});

after(async () => {
  await Promise.all(transports.map((t) => t.close()));
  await Promise.all([secure?.kill(), plain?.kill()]);
});

const mtls = (): SecurityOptions => ({ tlsCa: certs.ca, tlsCert: certs.clientCert, tlsKey: certs.clientKey, token });

/** The typed client of each transport against `to` (calcd), with options o. */
function clients(to: Calcd, o: SecurityOptions): Array<[string, Client<typeof CalculatorService>]> {
  const { client, transport } = createCalcTcpClient({ address: to.tcp, connectTimeoutMs: DEADLINE_MS, ...o });
  transports.push(transport);
  return [
    ["tcp", client],
    ["grpc", createCalcGrpcClient({ address: to.grpc, ...o })],
  ];
}

/** Asserts that a call with o fails on both transports with code and a message matching each transport's pattern. */
async function refused(to: Calcd, o: SecurityOptions, code: string, want: { tcp: RegExp; grpc: RegExp }): Promise<void> {
  for (const [name, client] of clients(to, o)) {
    await assert.rejects(
      client.calculate(ADD, { timeoutMs: DEADLINE_MS }),
      (e: unknown) => {
        assert.ok(e instanceof ConnectError, `${name}: not a ConnectError: ${String(e)}`);
        assert.equal(codeName(e.code), code, `${name}: ${e.rawMessage}`);
        assert.match(e.rawMessage, want[name as "tcp" | "grpc"], name);
        return true;
      },
      `${name} must fail`,
    );
  }
}

test("mutual TLS and a token: unary, concurrent and streaming calls on both transports", async () => {
  for (const [name, client] of clients(secure, mtls())) {
    assert.equal((await client.calculate(ADD, { timeoutMs: 5000 })).result, 5n, name);
    assert.equal((await client.evaluate({ expression: "2 * (3 + 4)" }, { timeoutMs: 5000 })).result, "14", name);
    const got = await Promise.all(
      Array.from({ length: 50 }, (_, i) => client.calculate({ operator: Operator.ADD, lhs: BigInt(i), rhs: BigInt(i) }, { timeoutMs: 5000 })),
    );
    assert.deepEqual(
      got.map((r) => r.result),
      Array.from({ length: 50 }, (_, i) => BigInt(2 * i)),
      name,
    );
    async function* input() {
      for (let i = 1n; i <= 3n; i++) {
        yield { id: i, calculation: { operator: Operator.MULTIPLY, lhs: i, rhs: 7n } };
      }
    }
    const out: bigint[] = [];
    for await (const r of client.calculateStream(input(), { timeoutMs: 5000 })) {
      out.push(r.outcome.value as bigint);
    }
    assert.deepEqual(out, [7n, 14n, 21n], name);
  }
});

test("raw TCP negotiates TLS 1.3 and ALPN calc/1, and verifies the server", async () => {
  const conn = await CalcTcpConnection.connect(secure.tcp, { ...mtls(), connectTimeoutMs: 5000 });
  try {
    assert.deepEqual(conn.tls, { protocol: "TLSv1.3", alpnProtocol: "calc/1", authorized: true });
  } finally {
    await conn.close();
  }
  const p = await CalcTcpConnection.connect(plain.tcp, { connectTimeoutMs: 5000 });
  assert.equal(p.tls, undefined);
  await p.close();
});

test("tlsServerName overrides the name verified (and sent as SNI)", async () => {
  for (const [name, client] of clients(secure, { ...mtls(), tlsServerName: "localhost" })) {
    assert.equal((await client.calculate(ADD, { timeoutMs: 5000 })).result, 5n, name);
  }
});

test("a server certificate from a CA the client does not trust: UNAVAILABLE", () =>
  refused(secure, { ...mtls(), tlsCa: other.ca }, "UNAVAILABLE", {
    tcp: /TLS connection to .* failed: the server's certificate is not signed by a CA this client trusts \(tlsCa\)/,
    grpc: /TLS connection to .* failed: the server's certificate is not signed by a CA this client trusts \(tlsCa\)/,
  }));

test("a server name the certificate does not hold: UNAVAILABLE", () =>
  refused(secure, { ...mtls(), tlsServerName: "calc.example.com" }, "UNAVAILABLE", {
    tcp: /the server's certificate is not valid for calc\.example\.com \(tlsServerName\)/,
    grpc: /the server's certificate is not valid for calc\.example\.com \(tlsServerName\)/,
  }));

test("no client certificate where calcd requires one: UNAVAILABLE", () =>
  refused(secure, { tlsCa: certs.ca, token }, "UNAVAILABLE", {
    tcp: /the server requires a client certificate \(mutual TLS: tlsCert and tlsKey\): tlsv13 alert certificate required/,
    grpc: /the server requires a client certificate \(mutual TLS: tlsCert and tlsKey\): tlsv13 alert certificate required/,
  }));

test("a client certificate from another CA: UNAVAILABLE", () =>
  refused(secure, { tlsCa: certs.ca, tlsCert: other.clientCert, tlsKey: other.clientKey, token }, "UNAVAILABLE", {
    tcp: /the server refused the client certificate \(tlsCert\): tlsv1 alert unknown ca/,
    grpc: /the server refused the client certificate \(tlsCert\): tlsv1 alert unknown ca/,
  }));

test("no token: UNAUTHENTICATED", () =>
  refused(secure, { ...mtls(), token: undefined }, "UNAUTHENTICATED", { tcp: /^auth: /, grpc: /^auth: / }));

test("a wrong token: UNAUTHENTICATED", () =>
  refused(secure, { ...mtls(), token: "not-the-token" }, "UNAUTHENTICATED", { tcp: /^auth: invalid token$/, grpc: /^auth: invalid token$/ }));

test("plaintext to the TLS port: UNAVAILABLE", () =>
  refused(secure, { token }, "UNAVAILABLE", {
    tcp: /this port requires TLS \(1\.3, ALPN calc\/1\)/,
    grpc: /the server closed the connection without a byte of HTTP\/2: is this a TLS port\?/,
  }));

test("TLS to a plaintext port: UNAVAILABLE", () =>
  refused(plain, mtls(), "UNAVAILABLE", {
    tcp: /TLS connection to .* failed: the server closed the connection or answered in plaintext during the TLS handshake: is this a plaintext port\?/,
    grpc: /TLS connection to .* failed: the server closed the connection or answered in plaintext during the TLS handshake: is this a plaintext port\?/,
  }));

/** A TLS server with calcd's certificate that accepts a connection and records what the client sends. */
async function tlsServer(opts: tls.TlsOptions): Promise<{ address: string; received: () => number; close: () => Promise<void> }> {
  let bytes = 0;
  const server = tls.createServer({ cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey), ...opts }, (s) => {
    s.on("data", (d: Buffer) => (bytes += d.length));
    s.on("error", () => {});
  });
  server.on("tlsClientError", () => {});
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  return { address: `127.0.0.1:${port}`, received: () => bytes, close: () => new Promise((r) => server.close(() => r())) };
}

test("raw TCP refuses a server that does not select ALPN calc/1, before sending anything", async () => {
  const s = await tlsServer({}); // no ALPNProtocols: selects none
  try {
    await assert.rejects(CalcTcpConnection.connect(s.address, { tlsCa: certs.ca, connectTimeoutMs: DEADLINE_MS }), (e: ConnectError) => {
      assert.equal(codeName(e.code), "UNAVAILABLE");
      assert.match(e.rawMessage, /the server did not agree to ALPN calc\/1 \(got none\)/);
      return true;
    });
    assert.equal(s.received(), 0, "the preface went to a server without ALPN calc/1");
  } finally {
    await s.close();
  }
});

test("raw TCP refuses TLS 1.2", async () => {
  const s = await tlsServer({ maxVersion: "TLSv1.2", ALPNProtocols: ["calc/1"] });
  try {
    await assert.rejects(CalcTcpConnection.connect(s.address, { tlsCa: certs.ca, connectTimeoutMs: DEADLINE_MS }), (e: ConnectError) => {
      assert.equal(codeName(e.code), "UNAVAILABLE");
      assert.match(e.rawMessage, /TLS connection to .* failed: the server does not speak TLS 1\.3: tlsv1 alert protocol version/);
      return true;
    });
    assert.equal(s.received(), 0);
  } finally {
    await s.close();
  }
});
