// The REQUEST header (PROTOCOL.md section 3): method ref, optional method
// name, optional deadline budget, optional metadata, then the message.

import { Flags, WireError } from "./frame.js";
import { appendUvarint, readUvarint } from "./varint.js";

/** Largest method ref. */
export const MAX_METHOD_REF = 65535;
/** Longest method name in bytes. */
export const MAX_METHOD_NAME_LEN = 512;
/** Most bytes of metadata keys and values in one request. */
export const MAX_METADATA_LEN = 8 << 10;
/** Largest deadline budget the server accepts: 100 years in microseconds. */
export const MAX_TIMEOUT_MICROS = 100 * 365 * 24 * 3600 * 1_000_000;
/** Most method refs a connection may bind. */
export const MAX_BOUND_REFS = 256;

/** A metadata entry: lower-case key and value (binary for "-bin" keys). */
export type MetadataEntry = [key: string, value: Uint8Array];

/** The decoded start of a REQUEST payload. */
export interface RequestHeader {
  /** Connection-local number naming the method, 1..65535. */
  methodRef: number;
  /** When set, binds methodRef to this full method name (METHOD_NAME). */
  methodName?: string;
  /** Deadline budget in microseconds (DEADLINE). */
  timeoutMicros?: number;
  /** Metadata pairs in order (METADATA). */
  metadata?: MetadataEntry[];
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/**
 * Encodes h followed by message as a REQUEST payload and returns it with the
 * header flags (METHOD_NAME, DEADLINE, METADATA) to OR into the frame's.
 */
export function encodeRequestPayload(h: RequestHeader, message: Uint8Array): { payload: Uint8Array; flags: number } {
  if (!Number.isInteger(h.methodRef) || h.methodRef < 1 || h.methodRef > MAX_METHOD_REF) {
    throw new RangeError(`method ref ${h.methodRef} not in 1..${MAX_METHOD_REF}`);
  }
  const head: number[] = [];
  let flags = 0;
  appendUvarint(head, h.methodRef);
  if (h.methodName !== undefined && h.methodName !== "") {
    const name = utf8.encode(h.methodName);
    if (name.length > MAX_METHOD_NAME_LEN) {
      throw new RangeError(`method name is ${name.length} bytes, more than ${MAX_METHOD_NAME_LEN}`);
    }
    flags |= Flags.METHOD_NAME;
    appendBytes(head, name);
  }
  if (h.timeoutMicros !== undefined) {
    flags |= Flags.DEADLINE;
    appendUvarint(head, Math.min(Math.max(0, Math.ceil(h.timeoutMicros)), MAX_TIMEOUT_MICROS));
  }
  if (h.metadata !== undefined && h.metadata.length > 0) {
    flags |= Flags.METADATA;
    appendUvarint(head, h.metadata.length);
    let total = 0;
    for (const [k, v] of h.metadata) {
      const key = utf8.encode(k);
      total += key.length + v.length;
      appendBytes(head, key);
      appendBytes(head, v);
    }
    if (total > MAX_METADATA_LEN) {
      throw new RangeError(`metadata is ${total} bytes, more than ${MAX_METADATA_LEN}`);
    }
  }
  const payload = new Uint8Array(head.length + message.length);
  payload.set(head, 0);
  payload.set(message, head.length);
  return { payload, flags };
}

function appendBytes(out: number[], b: Uint8Array): void {
  appendUvarint(out, b.length);
  for (let i = 0; i < b.length; i++) {
    out.push(b[i]);
  }
}

/**
 * Decodes the header at the start of a REQUEST payload with the given frame
 * flags, enforcing the same limits as calcd, and returns it with the message
 * bytes that follow. Malformed headers fail with BAD_HEADER.
 */
export function decodeRequestPayload(flags: number, payload: Uint8Array): { header: RequestHeader; message: Uint8Array } {
  let pos = 0;
  const uvarint = (limit: number, what: string): number => {
    const v = readUvarint(payload, pos);
    if (!v) {
      throw new WireError("BAD_HEADER", `bad ${what} varint`);
    }
    if (v.value > limit) {
      throw new WireError("BAD_HEADER", `${what} ${v.value} exceeds ${limit}`);
    }
    pos = v.next;
    return v.value;
  };
  const bytes = (limit: number, what: string): Uint8Array => {
    const n = uvarint(limit, `${what} length`);
    if (payload.length - pos < n) {
      throw new WireError("BAD_HEADER", `${what} runs past the payload`);
    }
    const s = payload.subarray(pos, pos + n);
    pos += n;
    return s;
  };
  const header: RequestHeader = { methodRef: uvarint(MAX_METHOD_REF, "method ref") };
  if (header.methodRef === 0) {
    throw new WireError("BAD_HEADER", "method ref 0");
  }
  if (flags & Flags.METHOD_NAME) {
    const name = bytes(MAX_METHOD_NAME_LEN, "method name");
    if (name.length === 0) {
      throw new WireError("BAD_HEADER", "empty method name");
    }
    header.methodName = decodeUtf8(name, "method name");
  }
  if (flags & Flags.DEADLINE) {
    header.timeoutMicros = uvarint(MAX_TIMEOUT_MICROS, "deadline");
  }
  if (flags & Flags.METADATA) {
    const n = uvarint(MAX_METADATA_LEN / 2, "metadata count");
    let budget = MAX_METADATA_LEN;
    header.metadata = [];
    for (let i = 0; i < n; i++) {
      const k = bytes(budget, "metadata");
      budget -= k.length;
      const v = bytes(budget, "metadata");
      budget -= v.length;
      header.metadata.push([decodeUtf8(k, "metadata key"), v]);
    }
  }
  return { header, message: payload.subarray(pos) };
}

function decodeUtf8(b: Uint8Array, what: string): string {
  try {
    return utf8Strict.decode(b);
  } catch {
    throw new WireError("BAD_HEADER", `${what} is not UTF-8`);
  }
}
