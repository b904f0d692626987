// Message bytes in frames (PROTOCOL.md section 6): snappy block compression
// at and above a threshold when it helps, and decoding that checks the
// claimed decoded length against the max message size before decompressing.
// The snappy implementation is a parameter: snappyjs (pure JavaScript, the
// default, what a browser runs) or the native one (src/tcp/snappy.ts).

import SnappyJS from "snappyjs";
import { DEFAULT_MAX_MESSAGE_SIZE, Flags, WireError } from "./frame.js";
import { readUvarint } from "./varint.js";

/** A message ready for a frame: its bytes and the flags that describe them. */
export interface EncodedMessage {
  bytes: Uint8Array;
  flags: number;
}

/** A snappy block-format implementation. */
export interface SnappyCodec {
  /** Compresses input into one snappy block. */
  compress(input: Uint8Array): Uint8Array;
  /** Decompresses one block whose decoded length (at most maxLength) the caller has checked; throws if it is corrupt. */
  uncompress(block: Uint8Array, maxLength: number): Uint8Array;
}

/** Snappy in pure JavaScript (snappyjs): runs anywhere. */
export const snappyJs: SnappyCodec = {
  compress: (input) => SnappyJS.compress(input),
  uncompress: (block, maxLength) => SnappyJS.uncompress(block, maxLength),
};

/**
 * Prepares msg for a frame: a snappy block with the COMPRESSED flag if msg is
 * at least threshold bytes long and the block is smaller, msg as it is
 * otherwise. threshold <= 0 disables compression.
 */
export function encodeMessage(msg: Uint8Array, threshold: number, snappy: SnappyCodec = snappyJs): EncodedMessage {
  if (threshold <= 0 || msg.length < threshold) {
    return { bytes: msg, flags: 0 };
  }
  const block = snappy.compress(msg);
  if (block.length >= msg.length) {
    return { bytes: msg, flags: 0 };
  }
  return { bytes: block, flags: Flags.COMPRESSED };
}

/**
 * Returns the decoded length a snappy block claims (its uvarint prefix), as
 * Go's snappy.DecodedLen does: CORRUPT_MESSAGE if the prefix is malformed or
 * claims more than 2^32 - 1 bytes.
 */
export function snappyDecodedLen(block: Uint8Array): number {
  const v = readUvarint(block, 0);
  if (!v || v.value > 0xffffffff) {
    throw new WireError("CORRUPT_MESSAGE", "snappy block has a bad decoded-length prefix");
  }
  return v.value;
}

/**
 * Returns the message carried by a frame payload with the given flags. An
 * uncompressed message above maxMessageSize, or a compressed one claiming a
 * decoded length above it, fails with MESSAGE_TOO_LARGE before anything is
 * decoded or allocated (a snappy bomb costs nothing); a block that does not
 * decode fails with CORRUPT_MESSAGE.
 */
export function decodeMessage(
  payload: Uint8Array,
  flags: number,
  maxMessageSize: number = DEFAULT_MAX_MESSAGE_SIZE,
  snappy: SnappyCodec = snappyJs,
): Uint8Array {
  if ((flags & Flags.COMPRESSED) === 0) {
    if (payload.length > maxMessageSize) {
      throw new WireError("MESSAGE_TOO_LARGE", `message of ${payload.length} bytes > max message size ${maxMessageSize}`);
    }
    return payload;
  }
  const n = snappyDecodedLen(payload);
  if (n > maxMessageSize) {
    throw new WireError("MESSAGE_TOO_LARGE", `snappy decoded length ${n} > max message size ${maxMessageSize}`);
  }
  let out: Uint8Array;
  try {
    out = snappy.uncompress(payload, maxMessageSize);
  } catch (e) {
    throw new WireError("CORRUPT_MESSAGE", `snappy block does not decode: ${(e as Error).message}`);
  }
  if (out.length !== n) {
    throw new WireError("CORRUPT_MESSAGE", `snappy block decoded to ${out.length} bytes, its prefix says ${n}`);
  }
  return out;
}
