import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import snappy from "snappy";
import { checkVector, type WireVector } from "../conformance/vectors.js";
import { decodeGoaway, decodeSettings, encodeGoaway, encodeSettings } from "../wire/control.js";
import { encodeFrame, FrameDecoder, FrameKind, Flags, WireError, decodePreface, PREFACE } from "../wire/frame.js";
import { decodeRequestPayload, encodeRequestPayload } from "../wire/header.js";
import { decodeMessage, encodeMessage } from "../wire/message.js";
import { appendUvarint, readUvarint } from "../wire/varint.js";

const here = dirname(fileURLToPath(import.meta.url));

test("every wire vector decodes as vectors.json says", () => {
  const file = resolve(here, "../../../../testdata/wire/vectors.json");
  const { vectors } = JSON.parse(readFileSync(file, "utf8")) as { vectors: WireVector[] };
  assert.ok(vectors.length > 0);
  for (const v of vectors) {
    assert.equal(checkVector(v), undefined, v.name);
  }
});

test("uvarint round-trips and rejects overlong input", () => {
  for (const v of [0, 1, 127, 128, 300, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) {
    const out: number[] = [];
    appendUvarint(out, v);
    assert.deepEqual(readUvarint(Uint8Array.from(out), 0), { value: v, next: out.length });
  }
  assert.equal(readUvarint(Uint8Array.of(0x80, 0x80), 0), undefined);
  assert.equal(readUvarint(new Uint8Array(11).fill(0xff), 0), undefined);
  assert.deepEqual(readUvarint(Uint8Array.of(0x90, 0xa1, 0x0f), 0), { value: 250000, next: 3 });
});

test("frames survive any chunking", () => {
  const frames = [
    encodeFrame(FrameKind.PING, 0, 0, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)),
    encodeFrame(FrameKind.MESSAGE, 0, 7, randomBytes(5000)),
    encodeFrame(FrameKind.HALF_CLOSE, 0, 7),
  ];
  const all = Buffer.concat(frames);
  for (const chunk of [1, 3, 7, 100, 4096, all.length]) {
    const d = new FrameDecoder();
    const got = [];
    for (let i = 0; i < all.length; i += chunk) {
      got.push(...d.push(all.subarray(i, i + chunk)));
    }
    d.end();
    assert.equal(got.length, 3);
    assert.deepEqual(Buffer.from(got[1].payload), Buffer.from(frames[1].subarray(10)));
    assert.equal(got[1].id, 7);
  }
});

test("an oversize length is rejected from the prefix alone", () => {
  const d = new FrameDecoder(64);
  assert.throws(() => d.push(Uint8Array.of(0, 0, 0, 65)), (e: WireError) => e.code === "FRAME_TOO_LARGE");
  assert.throws(() => new FrameDecoder().push(Uint8Array.of(0, 0, 0, 5)), (e: WireError) => e.code === "FRAME_TOO_SMALL");
  const t = new FrameDecoder();
  t.push(Uint8Array.of(0, 0, 0, 9, 8));
  assert.throws(() => t.end(), (e: WireError) => e.code === "TRUNCATED");
});

test("preface", () => {
  assert.equal(decodePreface(PREFACE).version, 1);
  assert.throws(() => decodePreface(Buffer.from("GET / HTTP/1.1")), (e: WireError) => e.code === "BAD_MAGIC");
});

test("request header round-trips with every field", () => {
  const md: [string, Uint8Array][] = [
    ["authorization", Buffer.from("Bearer t")],
    ["trace-bin", Uint8Array.of(0, 255)],
  ];
  const { payload, flags } = encodeRequestPayload(
    { methodRef: 300, methodName: "/calculator.v1.CalculatorService/Calculate", timeoutMicros: 250_000, metadata: md },
    Uint8Array.of(8, 1),
  );
  assert.equal(flags, Flags.METHOD_NAME | Flags.DEADLINE | Flags.METADATA);
  const { header, message } = decodeRequestPayload(flags, payload);
  assert.equal(header.methodRef, 300);
  assert.equal(header.methodName, "/calculator.v1.CalculatorService/Calculate");
  assert.equal(header.timeoutMicros, 250_000);
  assert.deepEqual(
    header.metadata?.map(([k, v]) => [k, Buffer.from(v).toString("hex")]),
    md.map(([k, v]) => [k, Buffer.from(v).toString("hex")]),
  );
  assert.deepEqual([...message], [8, 1]);
  assert.throws(() => decodeRequestPayload(0, Uint8Array.of(0)), (e: WireError) => e.code === "BAD_HEADER");
  assert.throws(() => decodeRequestPayload(Flags.METHOD_NAME, Uint8Array.of(1, 5, 0x41)), (e: WireError) => e.code === "BAD_HEADER");
});

test("compression: at the threshold only, and only when smaller", () => {
  const compressible = (n: number) => new Uint8Array(n).fill(0x61);
  assert.equal(encodeMessage(compressible(255), 256).flags, 0);
  const at = encodeMessage(compressible(256), 256);
  assert.equal(at.flags, Flags.COMPRESSED);
  assert.ok(at.bytes.length < 256);
  assert.deepEqual(Buffer.from(decodeMessage(at.bytes, at.flags)), Buffer.from(compressible(256)));
  const random = randomBytes(1000);
  assert.equal(encodeMessage(random, 256).flags, 0, "incompressible data is sent as is");
  assert.equal(encodeMessage(compressible(1000), 0).flags, 0, "threshold 0 disables compression");
});

test("decoding checks the snappy decoded length before decoding", () => {
  // 1 GiB claimed by a 7-byte block.
  const bomb = Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x04, 0x00, 0x61);
  assert.throws(() => decodeMessage(bomb, Flags.COMPRESSED), (e: WireError) => e.code === "MESSAGE_TOO_LARGE");
  const ok = snappy.compressSync(Buffer.alloc(100, 1));
  assert.throws(() => decodeMessage(ok, Flags.COMPRESSED, 99), (e: WireError) => e.code === "MESSAGE_TOO_LARGE");
  assert.equal(decodeMessage(ok, Flags.COMPRESSED, 100).length, 100);
  assert.throws(() => decodeMessage(Uint8Array.of(0x0a, 0xff, 0xff, 0xff), Flags.COMPRESSED), (e: WireError) => e.code === "CORRUPT_MESSAGE");
  assert.throws(() => decodeMessage(new Uint8Array(101), 0, 100), (e: WireError) => e.code === "MESSAGE_TOO_LARGE");
});

test("settings and goaway payloads", () => {
  const { settings, present } = decodeSettings(encodeSettings({ MAX_FRAME_SIZE: 64, IDLE_TIMEOUT_MILLIS: 0 }));
  assert.equal(settings.MAX_FRAME_SIZE, 64);
  assert.equal(settings.IDLE_TIMEOUT_MILLIS, 0);
  assert.equal(settings.COMPRESS_THRESHOLD, 256);
  assert.deepEqual(present, { MAX_FRAME_SIZE: 64, IDLE_TIMEOUT_MILLIS: 0 });
  // Unknown ids are ignored.
  assert.deepEqual(decodeSettings(Uint8Array.of(0, 99, 0, 0, 0, 1)).present, {});
  const g = decodeGoaway(encodeGoaway({ lastId: 7, status: { code: 0, message: "server shutting down" } }));
  assert.equal(g.lastId, 7);
  assert.equal(g.status.message, "server shutting down");
});
