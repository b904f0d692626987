// The wire codec both carriers share (src/wire, standard Web APIs) with its
// two snappy implementations, snappyjs (what a browser runs) and the native
// module (what the Node connections use): the frames of PROTOCOL.md, snappy
// blocks each side decodes from the other, and call metadata.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { CalcError } from "../errors.js";
import { toMetadataEntries } from "../core/metadata.js";
import { nativeSnappy } from "../tcp/snappy.js";
import { encodeFrame, Flags, FrameKind, hex, WireError } from "../wire/frame.js";
import { decodeMessage, encodeMessage, snappyJs } from "../wire/message.js";

test("frames are PROTOCOL.md's bytes", () => {
  // Section 1's example: RESPONSE to call 1, result 5.
  assert.equal(hex(encodeFrame(FrameKind.RESPONSE, 0, 1, Uint8Array.of(0x08, 0x05))), "000000080500000000010805");
  assert.equal(hex(encodeFrame(FrameKind.HALF_CLOSE, 0, 7)), "00000006040000000007");
  const big = encodeFrame(FrameKind.REQUEST, Flags.METHOD_NAME | Flags.COMPRESSED, 0xfffffffe, new Uint8Array(300).fill(0xab));
  assert.equal(hex(big.subarray(0, 10)), "000001320203fffffffe");
  assert.equal(big.length, 310);
  assert.ok(!(big instanceof Buffer), "no Buffer in the shared codec");
  assert.equal(hex(Uint8Array.of(0, 1, 0x7f, 0x80, 0xff)), "00017f80ff");
});

test("snappy blocks cross between snappyjs and the native snappy", () => {
  const text = new TextEncoder().encode("2 * (3 + 4) - 10 / 4; ".repeat(200));
  for (const [enc, dec] of [
    [snappyJs, nativeSnappy],
    [nativeSnappy, snappyJs],
  ]) {
    const { bytes, flags } = encodeMessage(text, 256, enc);
    assert.equal(flags, Flags.COMPRESSED);
    assert.ok(bytes.length < text.length);
    assert.deepEqual(Buffer.from(decodeMessage(bytes, flags, 1 << 20, dec)), Buffer.from(text));
    // Below the threshold, or incompressible: sent as is.
    assert.equal(encodeMessage(text.subarray(0, 100), 256, enc).flags, 0);
    assert.equal(encodeMessage(randomBytes(1000), 256, enc).flags, 0);
  }
});

test("a snappy block claiming more than the max message size is refused before decoding, by either codec", () => {
  const block = nativeSnappy.compress(new Uint8Array(5000));
  for (const codec of [snappyJs, nativeSnappy]) {
    assert.throws(() => decodeMessage(block, Flags.COMPRESSED, 4096, codec), (e: unknown) => e instanceof WireError && e.code === "MESSAGE_TOO_LARGE");
    assert.throws(() => decodeMessage(Uint8Array.of(0x05, 0xff, 0xff), Flags.COMPRESSED, 4096, codec), (e: unknown) => e instanceof WireError && e.code === "CORRUPT_MESSAGE");
    assert.throws(() => decodeMessage(new Uint8Array(5000), 0, 4096, codec), (e: unknown) => e instanceof WireError && e.code === "MESSAGE_TOO_LARGE");
  }
});

test("metadata: keys lower-cased, -bin values from base64, bad keys and bad base64 refused", () => {
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
  assert.deepEqual(Array.from(toMetadataEntries([["k-bin", "AAE="]])[0][1]), [0, 1]);
  const invalid = (e: unknown) => e instanceof CalcError && e.code === Code.InvalidArgument;
  assert.throws(() => toMetadataEntries({ "bad key": "v" }), invalid);
  assert.throws(() => toMetadataEntries({ "k-bin": "not base64!" }), invalid);
});
