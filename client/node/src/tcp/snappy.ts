// The native snappy module (snappy, a Rust addon) as the wire's SnappyCodec:
// what the Node connections compress with. Buffer stays here.

import snappy from "snappy";
import type { SnappyCodec } from "../wire/message.js";

const asBuffer = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** Snappy through the native module: faster than snappyjs on large messages. */
export const nativeSnappy: SnappyCodec = {
  compress: (input) => snappy.compressSync(asBuffer(input)),
  uncompress: (block) => snappy.uncompressSync(asBuffer(block), { asBuffer: true }) as Buffer,
};
