// Unsigned LEB128 varints (the protobuf / Go binary.Uvarint encoding) over
// JavaScript numbers. Values up to Number.MAX_SAFE_INTEGER round-trip exactly;
// a decoded value above that is reported as such so callers can reject it as
// "over the limit" rather than silently losing precision.

/** Appends the uvarint encoding of v (a non-negative safe integer) to out. */
export function appendUvarint(out: number[], v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new RangeError(`uvarint: ${v} is not a non-negative safe integer`);
  }
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

/** Returns the number of bytes appendUvarint writes for v. */
export function uvarintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

/** A decoded uvarint: its value and the offset just past it. */
export interface Uvarint {
  value: number;
  next: number;
}

/**
 * Reads a uvarint at buf[pos]. Returns undefined if the bytes end before the
 * varint does or if it is longer than 10 bytes / overflows 64 bits (Go's
 * binary.Uvarint reports both as n <= 0). A value above 2^53 - 1 is returned
 * as Infinity: larger than any limit a caller checks against.
 */
export function readUvarint(buf: Uint8Array, pos: number): Uvarint | undefined {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= buf.length) {
      return undefined;
    }
    const b = buf[pos + i];
    if (i === 9 && b > 1) {
      return undefined; // overflows 64 bits
    }
    value += (b & 0x7f) * scale;
    scale *= 0x80;
    if (b < 0x80) {
      return { value: value > Number.MAX_SAFE_INTEGER ? Infinity : value, next: pos + i + 1 };
    }
  }
  return undefined;
}
