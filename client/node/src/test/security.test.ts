// The TLS and token options without a TLS server: what counts as loopback,
// a token refused in plaintext to any other host (before connecting), the
// token on every raw TCP call, and the options' checks.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Code, createClient } from "@connectrpc/connect";
import { CalculatorService, Operator } from "../gen/calculator/v1/calculator_pb.js";
import { CalcError } from "../errors.js";
import { createCalcGrpcTransport } from "../grpc.js";
import { checkToken, isLoopback, loadTls, tlsConnectOptions, tlsEnabled } from "../security.js";
import { CalcTcpChannel } from "../tcp/channel.js";
import { CalcTcpConnection } from "../tcp/connection.js";
import { createTcpTransport } from "../tcp/transport.js";
import { FrameKind } from "../wire/frame.js";
import { FakeServer } from "./fake-server.js";

const plaintextRefusal = (e: CalcError) =>
  e instanceof CalcError && e.code === Code.InvalidArgument && /refusing to send the token in plaintext to .*, which is not a loopback address: use TLS/.test(e.rawMessage);

test("loopback: localhost and 127.0.0.0/8, ::1 (also IPv4-mapped); nothing else", () => {
  for (const h of ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"]) {
    assert.ok(isLoopback(h), h);
  }
  for (const h of ["example.com", "10.0.0.1", "0.0.0.0", "::", "", "localhost.example.com", "::ffff:10.0.0.1", "128.0.0.1"]) {
    assert.ok(!isLoopback(h), h);
  }
});

test("a token is refused in plaintext to a host that is not loopback, before any connection", async () => {
  checkToken("t", false, "127.0.0.1");
  checkToken("t", true, "192.0.2.1");
  checkToken(undefined, false, "192.0.2.1");
  assert.throws(() => checkToken("t", false, "192.0.2.1"), plaintextRefusal);
  assert.throws(() => checkToken("t\r\nx: y", true, "192.0.2.1"), (e: CalcError) => e.code === Code.InvalidArgument);
  // 192.0.2.1 (TEST-NET-1) is never connected to: each refuses first.
  await assert.rejects(CalcTcpConnection.connect("192.0.2.1:4000", { token: "t" }), plaintextRefusal);
  assert.throws(() => createTcpTransport({ address: "127.0.0.1:4000,192.0.2.1:4000", token: "t" }), plaintextRefusal);
  assert.throws(() => new CalcTcpChannel(["192.0.2.1:4000"], { token: "t" }), plaintextRefusal);
  assert.throws(() => createCalcGrpcTransport({ address: "192.0.2.1:50051", token: "t" }), plaintextRefusal);
  // Allowed: loopback in plaintext, anything over TLS (nothing connects until a call).
  await createTcpTransport({ address: "localhost:4000", token: "t" }).close();
  await createTcpTransport({ address: "192.0.2.1:4000", token: "t", tls: true }).close();
  createCalcGrpcTransport({ address: "[::1]:50051", token: "t" });
  createCalcGrpcTransport({ address: "192.0.2.1:50051", token: "t", tls: true });
});

test("TLS options: any turns TLS on; cert and key go together; files must be readable", () => {
  assert.equal(tlsEnabled({}), false);
  assert.equal(loadTls({ token: "t" } as object), undefined);
  for (const o of [{ tls: true }, { tlsCa: "x" }, { tlsServerName: "calc" }]) {
    assert.equal(tlsEnabled(o), true);
  }
  assert.throws(() => loadTls({ tlsCert: new Uint8Array(1) }), (e: CalcError) => e.code === Code.InvalidArgument && /go together/.test(e.rawMessage));
  assert.throws(() => loadTls({ tlsCa: "/nonexistent/ca.pem" }), (e: CalcError) => e.code === Code.InvalidArgument && /^tlsCa: .*ENOENT/.test(e.rawMessage));
  const o = tlsConnectOptions({ serverName: "calc.example.com" }, "127.0.0.1", 4000, "calc/1");
  assert.equal(o.minVersion, "TLSv1.3");
  assert.deepEqual(o.ALPNProtocols, ["calc/1"]);
  assert.equal(o.servername, "calc.example.com");
  assert.equal(tlsConnectOptions({}, "127.0.0.1", 4000, "calc/1").servername, undefined, "no IP address in SNI");
});

test("the token goes with every raw TCP call, unary and streaming; a call's own authorization wins", async () => {
  const s = await FakeServer.start();
  const transport = createTcpTransport({ address: s.address, token: "s3cret" });
  try {
    const client = createClient(CalculatorService, transport);
    const p1 = client.calculate({ operator: Operator.ADD, lhs: 1n, rhs: 1n });
    const p2 = client.calculate({ operator: Operator.ADD, lhs: 1n, rhs: 1n }, { headers: { "x-a": "b" } });
    const p3 = client.calculate({ operator: Operator.ADD, lhs: 1n, rhs: 1n }, { headers: { authorization: "Bearer other" } });
    const stream = client.calculateStream((async function* () {})());
    const peer = await s.conn();
    const heads = [];
    for (let id = 1; id <= 4; id++) {
      const f = await peer.next((x) => x.kind === FrameKind.REQUEST && x.id === id);
      heads.push(f.header!.metadata!.map(([k, v]) => `${k}: ${Buffer.from(v).toString()}`));
      if (id < 4) {
        peer.respond(id, Uint8Array.of(0x08, 0x02));
      } else {
        peer.status(id, { code: 0 });
      }
    }
    await Promise.all([p1, p2, p3]);
    for await (const _ of stream) {
      // none
    }
    assert.deepEqual(heads, [["authorization: Bearer s3cret"], ["authorization: Bearer s3cret", "x-a: b"], ["authorization: Bearer other"], ["authorization: Bearer s3cret"]]);
  } finally {
    await transport.close();
    await s.close();
  }
});
