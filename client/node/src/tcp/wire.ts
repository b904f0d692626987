// The package's `wire` namespace (index.ts): src/wire as Node code has
// always seen it, with frames as Buffers and messages compressed with the
// native snappy module by default. The connections themselves use src/wire
// directly (Uint8Array, a snappy codec given by the carrier).

import { DEFAULT_MAX_MESSAGE_SIZE, encodeFrame as encodeFrameBytes, type FrameKind } from "../wire/frame.js";
import { decodeMessage as decodeMessageWith, encodeMessage as encodeMessageWith, type EncodedMessage, type SnappyCodec } from "../wire/message.js";
import { nativeSnappy } from "./snappy.js";

export * from "../wire/index.js";

/** Encodes one frame: length prefix, kind, flags, id, payload. */
export function encodeFrame(kind: FrameKind, flags: number, id: number, payload?: Uint8Array): Buffer {
  return encodeFrameBytes(kind, flags, id, payload, Buffer.allocUnsafe) as Buffer;
}

/**
 * Prepares msg for a frame: a snappy block with the COMPRESSED flag if msg is
 * at least threshold bytes long and the block is smaller, msg as it is
 * otherwise. threshold <= 0 disables compression. Snappy is the native
 * module's unless another codec is given.
 */
export function encodeMessage(msg: Uint8Array, threshold: number, snappy: SnappyCodec = nativeSnappy): EncodedMessage {
  return encodeMessageWith(msg, threshold, snappy);
}

/**
 * Returns the message carried by a frame payload with the given flags. An
 * uncompressed message above maxMessageSize, or a compressed one claiming a
 * decoded length above it, fails with MESSAGE_TOO_LARGE before anything is
 * decoded or allocated (a snappy bomb costs nothing); a block that does not
 * decode fails with CORRUPT_MESSAGE. Snappy is the native module's unless
 * another codec is given.
 */
export function decodeMessage(payload: Uint8Array, flags: number, maxMessageSize: number = DEFAULT_MAX_MESSAGE_SIZE, snappy: SnappyCodec = nativeSnappy): Uint8Array {
  return decodeMessageWith(payload, flags, maxMessageSize, snappy);
}
