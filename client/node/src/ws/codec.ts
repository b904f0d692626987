// What the WebSocket transport needs of the wire format that src/wire does
// with Node's Buffer and the native snappy module: frame encoding, snappy
// message compression (snappyjs, pure JavaScript), metadata and hex, with
// standard Web APIs only (Uint8Array, DataView, TextEncoder, atob), so the
// transport runs in a browser as in Node.

import SnappyJS from "snappyjs";
import { CalcError, Code } from "../errors.js";
import { Flags, FRAME_OVERHEAD, HEADER_SIZE, WireError, type FrameKind } from "../wire/frame.js";
import type { MetadataEntry } from "../wire/header.js";
import { readUvarint } from "../wire/varint.js";

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

/** Encodes one frame: length prefix, kind, flags, id, payload. */
export function encodeFrame(kind: FrameKind, flags: number, id: number, payload: Uint8Array = EMPTY): Uint8Array {
  const buf = new Uint8Array(FRAME_OVERHEAD + payload.length);
  const view = new DataView(buf.buffer);
  view.setUint32(0, HEADER_SIZE + payload.length);
  buf[4] = kind;
  buf[5] = flags;
  view.setUint32(6, id >>> 0);
  buf.set(payload, FRAME_OVERHEAD);
  return buf;
}

/**
 * Prepares msg for a frame: a snappy block with the COMPRESSED flag if msg is
 * at least threshold bytes long and the block is smaller, msg as it is
 * otherwise. threshold <= 0 disables compression.
 */
export function encodeMessage(msg: Uint8Array, threshold: number): { bytes: Uint8Array; flags: number } {
  if (threshold <= 0 || msg.length < threshold) {
    return { bytes: msg, flags: 0 };
  }
  const block = SnappyJS.compress(msg);
  if (block.length >= msg.length) {
    return { bytes: msg, flags: 0 };
  }
  return { bytes: block, flags: Flags.COMPRESSED };
}

/**
 * Returns the message a frame payload with the given flags carries. An
 * uncompressed message over maxMessageSize, or a snappy block claiming a
 * decoded length over it, fails with MESSAGE_TOO_LARGE before anything is
 * decoded; a block that does not decode fails with CORRUPT_MESSAGE.
 */
export function decodeMessage(payload: Uint8Array, flags: number, maxMessageSize: number): Uint8Array {
  if ((flags & Flags.COMPRESSED) === 0) {
    if (payload.length > maxMessageSize) {
      throw new WireError("MESSAGE_TOO_LARGE", `message of ${payload.length} bytes > max message size ${maxMessageSize}`);
    }
    return payload;
  }
  const n = readUvarint(payload, 0);
  if (!n || n.value > 0xffffffff) {
    throw new WireError("CORRUPT_MESSAGE", "snappy block has a bad decoded-length prefix");
  }
  if (n.value > maxMessageSize) {
    throw new WireError("MESSAGE_TOO_LARGE", `snappy decoded length ${n.value} > max message size ${maxMessageSize}`);
  }
  let out: Uint8Array;
  try {
    out = SnappyJS.uncompress(payload, maxMessageSize);
  } catch (e) {
    throw new WireError("CORRUPT_MESSAGE", `snappy block does not decode: ${(e as Error).message}`);
  }
  if (out.length !== n.value) {
    throw new WireError("CORRUPT_MESSAGE", `snappy block decoded to ${out.length} bytes, its prefix says ${n.value}`);
  }
  return out;
}

/**
 * Metadata for a call. Keys are lower-cased. Values of keys ending in "-bin"
 * are binary: pass a Uint8Array, or a string holding base64.
 */
export type MetadataInit =
  | Record<string, string | Uint8Array | ReadonlyArray<string | Uint8Array>>
  | Iterable<readonly [string, string | Uint8Array]>
  | Headers;

/** Converts call metadata to wire entries: lower-case keys, binary values. */
export function toMetadataEntries(md: MetadataInit): MetadataEntry[] {
  const out: MetadataEntry[] = [];
  const add = (k: string, v: string | Uint8Array) => {
    const key = k.toLowerCase();
    if (!/^[0-9a-z_.-]+$/.test(key)) {
      throw new CalcError(`metadata key ${JSON.stringify(k)} is not lower-case ASCII (0-9 a-z _ . -)`, Code.InvalidArgument);
    }
    let value: Uint8Array;
    if (typeof v !== "string") {
      value = v;
    } else if (key.endsWith("-bin")) {
      value = fromBase64(v);
    } else {
      value = utf8.encode(v);
    }
    out.push([key, value]);
  };
  if (typeof Headers !== "undefined" && md instanceof Headers) {
    md.forEach((v, k) => {
      for (const part of k.endsWith("-bin") ? v.split(/,\s*/) : [v]) {
        add(k, part);
      }
    });
  } else if (Symbol.iterator in md) {
    for (const [k, v] of md as Iterable<readonly [string, string | Uint8Array]>) {
      add(k, v);
    }
  } else {
    for (const [k, v] of Object.entries(md)) {
      if (Array.isArray(v)) {
        for (const x of v) {
          add(k, x);
        }
      } else {
        add(k, v as string | Uint8Array);
      }
    }
  }
  return out;
}

/** Decodes base64 (standard or URL alphabet, padding optional). */
function fromBase64(s: string): Uint8Array {
  const std = s.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  const bin = atob(std + "=".repeat((4 - (std.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) {
    out[i] = bin.charCodeAt(i);
  }
  return out;
}

/** Lower-case hex of bytes. */
export function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) {
    s += b.toString(16).padStart(2, "0");
  }
  return s;
}
