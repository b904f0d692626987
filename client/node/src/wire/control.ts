// Payloads of the connection frames (SETTINGS, PING/PONG, GOAWAY) and of
// STATUS (PROTOCOL.md sections 3, 4 and 5).

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import { StatusSchema } from "../gen/google/rpc/status_pb.js";
import {
  DEFAULT_COMPRESS_THRESHOLD,
  DEFAULT_IDLE_TIMEOUT_MILLIS,
  DEFAULT_MAX_CONCURRENT_CALLS,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_MAX_MESSAGE_SIZE,
  MAX_PING_PAYLOAD,
  WireError,
} from "./frame.js";

/** Setting ids of a SETTINGS frame. */
export enum SettingId {
  MAX_FRAME_SIZE = 1,
  MAX_MESSAGE_SIZE = 2,
  COMPRESS_THRESHOLD = 3,
  MAX_CONCURRENT_CALLS = 4,
  IDLE_TIMEOUT_MILLIS = 5,
}

/** The server's settings; a SETTINGS frame overrides the defaults it names. */
export interface Settings {
  MAX_FRAME_SIZE: number;
  MAX_MESSAGE_SIZE: number;
  COMPRESS_THRESHOLD: number;
  MAX_CONCURRENT_CALLS: number;
  IDLE_TIMEOUT_MILLIS: number;
}

/** The protocol's default settings. */
export const DEFAULT_SETTINGS: Readonly<Settings> = Object.freeze({
  MAX_FRAME_SIZE: DEFAULT_MAX_FRAME_SIZE,
  MAX_MESSAGE_SIZE: DEFAULT_MAX_MESSAGE_SIZE,
  COMPRESS_THRESHOLD: DEFAULT_COMPRESS_THRESHOLD,
  MAX_CONCURRENT_CALLS: DEFAULT_MAX_CONCURRENT_CALLS,
  IDLE_TIMEOUT_MILLIS: DEFAULT_IDLE_TIMEOUT_MILLIS,
});

/**
 * Decodes a SETTINGS payload: 6-byte entries of u16 id and u32 value. Unknown
 * ids are ignored. Returns the defaults overridden by the entries, and the
 * entries that were present (by name) for callers that care.
 */
export function decodeSettings(payload: Uint8Array): { settings: Settings; present: Partial<Settings> } {
  if (payload.length % 6 !== 0) {
    throw new WireError("BAD_PAYLOAD", `SETTINGS payload of ${payload.length} bytes is not a whole number of 6-byte entries`);
  }
  const settings: Settings = { ...DEFAULT_SETTINGS };
  const present: Partial<Settings> = {};
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  for (let off = 0; off < payload.length; off += 6) {
    const id = view.getUint16(off);
    const value = view.getUint32(off + 2);
    const name = SettingId[id] as keyof Settings | undefined;
    if (name !== undefined) {
      settings[name] = value;
      present[name] = value;
    }
  }
  return { settings, present };
}

/** Encodes settings entries, in id order. */
export function encodeSettings(s: Partial<Settings>): Uint8Array {
  const ids = Object.keys(s)
    .map((k) => SettingId[k as keyof typeof SettingId])
    .filter((id) => id !== undefined)
    .sort((a, b) => a - b);
  const out = new Uint8Array(ids.length * 6);
  const view = new DataView(out.buffer);
  ids.forEach((id, i) => {
    view.setUint16(i * 6, id);
    view.setUint32(i * 6 + 2, s[SettingId[id] as keyof Settings]!);
  });
  return out;
}

/** Checks a PING or PONG payload's size. */
export function checkPingPayload(payload: Uint8Array): Uint8Array {
  if (payload.length > MAX_PING_PAYLOAD) {
    throw new WireError("BAD_PAYLOAD", `PING payload of ${payload.length} bytes > ${MAX_PING_PAYLOAD}`);
  }
  return payload;
}

/** A decoded google.rpc.Status. */
export interface RpcStatus {
  /** gRPC code number. */
  code: number;
  message: string;
  /** Details, as google.protobuf.Any (type URL and bytes). */
  details: Any[];
}

/** Decodes a google.rpc.Status (a STATUS payload; empty means OK). */
export function decodeStatus(payload: Uint8Array): RpcStatus {
  try {
    const s = fromBinary(StatusSchema, payload);
    return { code: s.code, message: s.message, details: s.details };
  } catch (e) {
    throw new WireError("INVALID_PROTOBUF", `status is not a valid google.rpc.Status: ${(e as Error).message}`);
  }
}

/** Encodes a google.rpc.Status. */
export function encodeStatus(s: Partial<RpcStatus>): Uint8Array {
  return toBinary(StatusSchema, create(StatusSchema, { code: s.code ?? 0, message: s.message ?? "", details: s.details ?? [] }));
}

/** A decoded GOAWAY payload. */
export interface Goaway {
  /** The server answers calls with ids up to this one, and no others. */
  lastId: number;
  status: RpcStatus;
}

/** Decodes a GOAWAY payload: u32 last accepted id, then a google.rpc.Status. */
export function decodeGoaway(payload: Uint8Array): Goaway {
  if (payload.length < 4) {
    throw new WireError("BAD_PAYLOAD", `GOAWAY payload of ${payload.length} bytes has no last id`);
  }
  const lastId = new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getUint32(0);
  return { lastId, status: decodeStatus(payload.subarray(4)) };
}

/** Encodes a GOAWAY payload. */
export function encodeGoaway(g: { lastId: number; status: Partial<RpcStatus> }): Uint8Array {
  const st = encodeStatus(g.status);
  const out = new Uint8Array(4 + st.length);
  new DataView(out.buffer).setUint32(0, g.lastId >>> 0);
  out.set(st, 4);
  return out;
}
