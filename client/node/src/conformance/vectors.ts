// Checks the wire test vectors (testdata/wire/vectors.json) against this
// library's decoders: preface, frames (fed whole and one byte at a time),
// request headers, messages (snappy, size limits, protobuf), settings,
// status and goaway payloads. Every key of a vector is checked or rejected
// as unknown: nothing is skipped silently.

import { equals, fromBinary, fromJson, type DescMessage, type JsonValue } from "@bufbuild/protobuf";
import { file_calculator_v1_calculator, CalculatorService } from "../gen/calculator/v1/calculator_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "../gen/google/rpc/error_details_pb.js";
import { decodeGoaway, decodeSettings, decodeStatus, type RpcStatus } from "../wire/control.js";
import {
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_MAX_MESSAGE_SIZE,
  decodePreface,
  FrameDecoder,
  FrameKind,
  hex,
  kindName,
  WireError,
  type Frame,
} from "../wire/frame.js";
import { decodeRequestPayload } from "../wire/header.js";
import { decodeMessage } from "../wire/message.js";

/** One vector of vectors.json. */
export interface WireVector {
  name: string;
  [key: string]: unknown;
}

type Obj = Record<string, unknown>;

const VECTOR_KEYS = new Set(["name", "description", "preface", "hex", "version", "error", "frames", "limits", "server"]);
const COMMON_FRAME_KEYS = ["kind", "flags", "id"];
const MESSAGE_KEYS = ["message_type", "message", "message_error"];
/** The keys a vector's frame may have, by kind: each is checked below. */
const FRAME_KEYS: Record<string, Set<string>> = {
  REQUEST: new Set([...COMMON_FRAME_KEYS, "method_ref", "method_name", "timeout_us", "metadata", ...MESSAGE_KEYS]),
  MESSAGE: new Set([...COMMON_FRAME_KEYS, ...MESSAGE_KEYS]),
  RESPONSE: new Set([...COMMON_FRAME_KEYS, ...MESSAGE_KEYS]),
  STATUS: new Set([...COMMON_FRAME_KEYS, "status"]),
  SETTINGS: new Set([...COMMON_FRAME_KEYS, "settings"]),
  PING: new Set([...COMMON_FRAME_KEYS, "ping_hex"]),
  PONG: new Set([...COMMON_FRAME_KEYS, "ping_hex"]),
  GOAWAY: new Set([...COMMON_FRAME_KEYS, "status", "last_id"]),
  CANCEL: new Set(COMMON_FRAME_KEYS),
  HALF_CLOSE: new Set(COMMON_FRAME_KEYS),
};
const STATUS_KEYS = new Set(["code", "message", "detail_types"]);

/** Message schemas by full name, from the generated calculator file. */
const SCHEMAS = new Map<string, DescMessage>(file_calculator_v1_calculator.messages.map((m) => [m.typeName, m]));
for (const m of [BadRequestSchema, ErrorInfoSchema]) {
  SCHEMAS.set(m.typeName, m);
}
/** The service's methods by full method name. */
const METHODS = new Map(CalculatorService.methods.map((m) => [`/${CalculatorService.typeName}/${m.name}`, m]));

class Mismatch extends Error {}

function fail(msg: string): never {
  throw new Mismatch(msg);
}

function expectEq(what: string, got: unknown, want: unknown): void {
  if (JSON.stringify(got) !== JSON.stringify(want)) {
    fail(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  }
}

function checkKeys(what: string, o: Obj, allowed: Set<string>): void {
  for (const k of Object.keys(o)) {
    if (!allowed.has(k)) {
      fail(`${what} has a key this runner does not know how to check: ${JSON.stringify(k)}`);
    }
  }
}

interface Decoded {
  version?: number;
  frames: Frame[];
  error?: string;
}

/** Decodes a vector's bytes with the given chunking (0 = all at once). */
function decodeStream(bytes: Uint8Array, preface: boolean, maxFrameSize: number, chunk: number): Decoded {
  const out: Decoded = { frames: [] };
  let rest = bytes;
  if (preface) {
    try {
      const p = decodePreface(bytes);
      out.version = p.version;
      rest = p.rest;
    } catch (e) {
      if (e instanceof WireError) {
        out.error = e.code;
        return out;
      }
      throw e;
    }
  }
  const dec = new FrameDecoder(maxFrameSize);
  try {
    if (chunk <= 0) {
      out.frames.push(...dec.push(rest));
    } else {
      for (let i = 0; i < rest.length; i += chunk) {
        out.frames.push(...dec.push(rest.subarray(i, i + chunk)));
      }
    }
    dec.end();
  } catch (e) {
    if (!(e instanceof WireError)) {
      throw e;
    }
    out.frames.push(...(((e as { frames?: Frame[] }).frames ?? []) as Frame[]));
    out.error = e.code;
  }
  return out;
}

/** Compares a decoded google.rpc.Status with a vector's expectation. */
function checkStatus(what: string, got: RpcStatus, want: Obj): void {
  checkKeys(what, want, STATUS_KEYS);
  expectEq(`${what} code`, got.code, want.code ?? 0);
  expectEq(`${what} message`, got.message, want.message ?? "");
  expectEq(
    `${what} detail types`,
    got.details.map((d) => d.typeUrl),
    want.detail_types ?? [],
  );
  for (const d of got.details) {
    const schema = SCHEMAS.get(d.typeUrl.substring(d.typeUrl.lastIndexOf("/") + 1));
    if (schema) {
      try {
        fromBinary(schema, d.value);
      } catch (e) {
        fail(`${what} detail ${d.typeUrl} does not decode: ${(e as Error).message}`);
      }
    }
  }
}

/**
 * Decodes and compares a frame's message. type is the message type the frame
 * carries (undefined when none can be known, e.g. an unknown method).
 */
function checkMessage(what: string, f: Frame, body: Uint8Array, typeName: string | undefined, want: Obj, maxMessage: number): void {
  const hasMessage = "message" in want;
  const wantErr = want.message_error as string | undefined;
  if (!hasMessage && wantErr === undefined) {
    if (body.length !== 0) {
      fail(`${what}: carries ${body.length} message bytes the vector does not describe`);
    }
    return;
  }
  if (typeName === undefined) {
    fail(`${what}: the vector describes a message but its type cannot be known`);
  }
  const schema = SCHEMAS.get(typeName) ?? fail(`${what}: unknown message type ${typeName}`);
  let gotErr: string | undefined;
  let msgBytes: Uint8Array | undefined;
  try {
    msgBytes = decodeMessage(body, f.flags, maxMessage);
  } catch (e) {
    if (!(e instanceof WireError)) {
      throw e;
    }
    gotErr = e.code;
  }
  let got;
  if (msgBytes !== undefined) {
    try {
      got = fromBinary(schema, msgBytes);
    } catch {
      gotErr = "INVALID_PROTOBUF";
    }
  }
  expectEq(`${what} message_error`, gotErr, wantErr);
  if (hasMessage) {
    const expected = fromJson(schema, want.message as JsonValue);
    if (!got || !equals(schema, got, expected)) {
      fail(`${what}: message differs from ${JSON.stringify(want.message)}`);
    }
  }
}

/** Checks one vector; returns undefined on success or why it failed. */
export function checkVector(v: WireVector): string | undefined {
  try {
    checkVectorOrThrow(v);
    return undefined;
  } catch (e) {
    if (e instanceof Mismatch) {
      return e.message;
    }
    return `unexpected ${(e as Error).stack ?? e}`;
  }
}

function checkVectorOrThrow(v: WireVector): void {
  checkKeys("vector", v, VECTOR_KEYS);
  if (typeof v.hex !== "string") {
    fail("vector has no hex");
  }
  const bytes = new Uint8Array(Buffer.from(v.hex, "hex"));
  if (bytes.length * 2 !== v.hex.length) {
    fail("hex is not valid hex");
  }
  const limits = (v.limits ?? {}) as Obj;
  checkKeys("limits", limits, new Set(["max_frame_size", "max_message_size"]));
  const maxFrame = (limits.max_frame_size as number | undefined) ?? DEFAULT_MAX_FRAME_SIZE;
  const maxMessage = (limits.max_message_size as number | undefined) ?? DEFAULT_MAX_MESSAGE_SIZE;
  const preface = v.preface === true;

  const whole = decodeStream(bytes, preface, maxFrame, 0);
  const bytewise = decodeStream(bytes, preface, maxFrame, 1);
  if (whole.error !== bytewise.error || whole.frames.length !== bytewise.frames.length) {
    fail(
      `decoding all at once (${whole.frames.length} frames, ${whole.error ?? "no error"}) differs from byte by byte (${bytewise.frames.length} frames, ${bytewise.error ?? "no error"})`,
    );
  }
  whole.frames.forEach((f, i) => {
    const g = bytewise.frames[i];
    if (f.kind !== g.kind || f.flags !== g.flags || f.id !== g.id || hex(f.payload) !== hex(g.payload)) {
      fail(`frame ${i} decodes differently byte by byte`);
    }
  });

  if (preface && "version" in v) {
    expectEq("preface version", whole.version, v.version);
  }
  expectEq("error", whole.error, v.error);
  const want = (v.frames ?? []) as Obj[];
  if (whole.frames.length !== want.length) {
    fail(`decoded ${whole.frames.length} frames (${whole.frames.map((f) => kindName(f.kind)).join(", ")}), want ${want.length}`);
  }

  const refs = new Map<number, string>(); // method ref -> method name, across the vector's frames
  const callMethods = new Map<number, string>(); // call id -> method name
  whole.frames.forEach((f, i) => checkFrame(`frame ${i} (${kindName(f.kind)})`, f, want[i], refs, callMethods, maxMessage));
}

function checkFrame(what: string, f: Frame, want: Obj, refs: Map<number, string>, callMethods: Map<number, string>, maxMessage: number): void {
  expectEq(`${what} kind`, kindName(f.kind), want.kind);
  checkKeys(what, want, FRAME_KEYS[kindName(f.kind)!]);
  expectEq(`${what} flags`, f.flags, want.flags);
  expectEq(`${what} id`, f.id, want.id);
  const noPayload = () => {
    if (f.payload.length !== 0) {
      fail(`${what}: payload should be empty, has ${f.payload.length} bytes`);
    }
  };
  switch (f.kind) {
    case FrameKind.REQUEST: {
      let decoded;
      try {
        decoded = decodeRequestPayload(f.flags, f.payload);
      } catch (e) {
        fail(`${what}: request header does not decode: ${(e as Error).message}`);
      }
      const { header: h, message } = decoded;
      expectEq(`${what} method_ref`, h.methodRef, want.method_ref);
      expectEq(`${what} method_name`, h.methodName, want.method_name);
      expectEq(`${what} timeout_us`, h.timeoutMicros, want.timeout_us);
      const wantMd = want.metadata as [string, string][] | undefined;
      const gotMd = h.metadata?.map(([k, val]) => [k, hex(val)]);
      const wantMdHex = wantMd?.map(([k, val]) => [k, hex(k.endsWith("-bin") ? Buffer.from(val, "latin1") : Buffer.from(val, "utf8"))]);
      expectEq(`${what} metadata`, gotMd, wantMdHex);
      if (h.methodName !== undefined) {
        const bound = refs.get(h.methodRef);
        if (bound !== undefined && bound !== h.methodName) {
          fail(`${what}: rebinds ref ${h.methodRef} from ${bound} to ${h.methodName}`);
        }
        refs.set(h.methodRef, h.methodName);
      }
      const name = refs.get(h.methodRef) ?? fail(`${what}: method ref ${h.methodRef} was never bound`);
      callMethods.set(f.id, name);
      const method = METHODS.get(name);
      let typeName: string | undefined;
      if (method) {
        if (method.methodKind === "unary") {
          typeName = method.input.typeName;
        } else if (message.length !== 0 || "message" in want || "message_type" in want) {
          fail(`${what}: a streaming REQUEST carries no message`);
        }
      }
      if ("message_type" in want) {
        expectEq(`${what} message_type (from the method)`, typeName, want.message_type);
      }
      checkMessage(what, f, message, typeName, want, maxMessage);
      return;
    }
    case FrameKind.MESSAGE:
    case FrameKind.RESPONSE: {
      // The type follows from the call's method when the vector has the
      // REQUEST; a MESSAGE of a call we only see from the server's side
      // relies on the vector's message_type.
      const method = METHODS.get(callMethods.get(f.id) ?? "");
      let typeName = want.message_type as string | undefined;
      if (method) {
        const derived = f.kind === FrameKind.RESPONSE ? method.output.typeName : method.input.typeName;
        if (typeName !== undefined) {
          expectEq(`${what} message_type (from the method)`, derived, typeName);
        }
        typeName = derived;
      }
      checkMessage(what, f, f.payload, typeName, want, maxMessage);
      return;
    }
    case FrameKind.STATUS: {
      const st = decodeStatusOrFail(what, f.payload);
      checkStatus(`${what} status`, st, (want.status ?? fail(`${what}: vector has no status`)) as Obj);
      return;
    }
    case FrameKind.SETTINGS: {
      let present;
      try {
        present = decodeSettings(f.payload).present;
      } catch (e) {
        fail(`${what}: ${(e as Error).message}`);
      }
      const sorted = (o: Obj) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
      expectEq(`${what} settings`, sorted(present), sorted((want.settings ?? {}) as Obj));
      return;
    }
    case FrameKind.PING:
    case FrameKind.PONG:
      if (f.payload.length > 64) {
        fail(`${what}: payload of ${f.payload.length} bytes is over 64`);
      }
      expectEq(`${what} ping_hex`, hex(f.payload), want.ping_hex);
      return;
    case FrameKind.GOAWAY: {
      let g;
      try {
        g = decodeGoaway(f.payload);
      } catch (e) {
        fail(`${what}: ${(e as Error).message}`);
      }
      expectEq(`${what} last_id`, g.lastId, want.last_id);
      checkStatus(`${what} status`, g.status, (want.status ?? fail(`${what}: vector has no status`)) as Obj);
      return;
    }
    case FrameKind.CANCEL:
    case FrameKind.HALF_CLOSE:
      noPayload();
      return;
  }
}

function decodeStatusOrFail(what: string, payload: Uint8Array): RpcStatus {
  try {
    return decodeStatus(payload);
  } catch (e) {
    fail(`${what}: ${(e as Error).message}`);
  }
}
