// Call metadata as users give it (a record, pairs or Headers) turned into the
// REQUEST header's entries (PROTOCOL.md section 3), with standard Web APIs
// only (TextEncoder, atob).

import { CalcError, Code } from "../errors.js";
import type { MetadataEntry } from "../wire/header.js";

/**
 * Metadata for a call. Keys are lower-cased. Values of keys ending in "-bin"
 * are binary: pass a Uint8Array, or a string holding base64 (as gRPC's HTTP/2
 * headers and connect's encodeBinaryHeader do).
 */
export type MetadataInit =
  | Record<string, string | Uint8Array | ReadonlyArray<string | Uint8Array>>
  | Iterable<readonly [string, string | Uint8Array]>
  | Headers;

const utf8 = new TextEncoder();

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
      value = fromBase64(key, v);
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

/** Decodes base64 (standard or URL alphabet, padding optional); INVALID_ARGUMENT if it is not base64. */
function fromBase64(key: string, s: string): Uint8Array {
  const std = s.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
  let bin: string;
  try {
    bin = atob(std + "=".repeat((4 - (std.length % 4)) % 4));
  } catch {
    throw new CalcError(`metadata ${key}: value is not base64`, Code.InvalidArgument);
  }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) {
    out[i] = bin.charCodeAt(i);
  }
  return out;
}
