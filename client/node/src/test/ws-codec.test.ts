// The WebSocket transport's codec (src/ws/codec.ts, standard Web APIs and
// snappyjs) against the Node one (src/wire, Buffer and the native snappy):
// the same frames, and snappy blocks each side decodes from the other.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import snappy from "snappy";
import { decodeMessage, encodeFrame, encodeMessage, hex, toMetadataEntries } from "../ws/codec.js";
import { encodeFrame as nodeEncodeFrame, Flags, FrameKind, WireError, hex as nodeHex } from "../wire/frame.js";

test("frames are byte for byte the Node encoder's", () => {
  for (const [kind, flags, id, payload] of [
    [FrameKind.PING, 0, 0, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8)],
    [FrameKind.REQUEST, Flags.METHOD_NAME | Flags.COMPRESSED, 0xfffffffe, randomBytes(300)],
    [FrameKind.HALF_CLOSE, 0, 7, undefined],
  ] as const) {
    const got = encodeFrame(kind, flags, id, payload);
    assert.deepEqual(Buffer.from(got), nodeEncodeFrame(kind, flags, id, payload));
    assert.equal(hex(got), nodeHex(got));
  }
});

test("snappy blocks cross between snappyjs and the native snappy", () => {
  const text = new TextEncoder().encode("2 * (3 + 4) - 10 / 4; ".repeat(200));
  const { bytes, flags } = encodeMessage(text, 256);
  assert.equal(flags, Flags.COMPRESSED);
  assert.ok(bytes.length < text.length);
  assert.deepEqual(snappy.uncompressSync(Buffer.from(bytes), { asBuffer: true }), Buffer.from(text));
  const native = snappy.compressSync(Buffer.from(text));
  assert.deepEqual(Buffer.from(decodeMessage(native, Flags.COMPRESSED, 1 << 20)), Buffer.from(text));
  // Below the threshold, or incompressible: sent as is.
  assert.equal(encodeMessage(text.subarray(0, 100), 256).flags, 0);
  assert.equal(encodeMessage(randomBytes(1000), 256).flags, 0);
});

test("a snappy block claiming more than the max message size is refused before decoding", () => {
  const block = snappy.compressSync(Buffer.alloc(5000));
  assert.throws(() => decodeMessage(block, Flags.COMPRESSED, 4096), (e: unknown) => e instanceof WireError && e.code === "MESSAGE_TOO_LARGE");
  assert.throws(() => decodeMessage(Uint8Array.of(0x05, 0xff, 0xff), Flags.COMPRESSED, 4096), (e: unknown) => e instanceof WireError && e.code === "CORRUPT_MESSAGE");
  assert.throws(() => decodeMessage(new Uint8Array(5000), 0, 4096), (e: unknown) => e instanceof WireError && e.code === "MESSAGE_TOO_LARGE");
});

test("metadata: keys lower-cased, -bin values from base64, bad keys refused", () => {
  const entries = toMetadataEntries({ Authorization: "Bearer t", "trace-bin": "AQID", "x-id": ["a", "b"] });
  assert.deepEqual(
    entries.map(([k, v]) => [k, Array.from(v)]),
    [
      ["authorization", Array.from(new TextEncoder().encode("Bearer t"))],
      ["trace-bin", [1, 2, 3]],
      ["x-id", [97]],
      ["x-id", [98]],
    ],
  );
  assert.deepEqual(Array.from(toMetadataEntries(new Headers({ "k-bin": "_-8" }))[0][1]), [0xff, 0xef]);
  assert.throws(() => toMetadataEntries({ "bad key": "v" }));
});
