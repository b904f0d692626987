// Framing of calc's raw TCP protocol v1 (PROTOCOL.md sections 1 and 2): the
// client preface, the frame header and an incremental frame decoder. No
// sockets here: the decoder is fed bytes and hands back whole frames. Like
// all of src/wire, standard Web APIs only (no Buffer): the browser transport
// uses it as the Node ones do.

/** ASCII "CALC", the first four bytes of the client preface. */
export const MAGIC = Uint8Array.of(0x43, 0x41, 0x4c, 0x43);
/** The protocol version this library speaks. */
export const PROTOCOL_VERSION = 1;
/** The client preface: magic then version. */
export const PREFACE = Uint8Array.of(...MAGIC, PROTOCOL_VERSION);

const EMPTY = new Uint8Array(0);

/** Bytes of the length prefix. */
export const LENGTH_SIZE = 4;
/** Bytes the length counts besides the payload: kind, flags, id. */
export const HEADER_SIZE = 6;
/** Bytes before a frame's payload: length prefix plus header. */
export const FRAME_OVERHEAD = LENGTH_SIZE + HEADER_SIZE;

/** Default largest frame length: a 4 MiB message plus 16 KiB of headers. */
export const DEFAULT_MAX_FRAME_SIZE = 4_210_688;
/** Default largest message after decompression. */
export const DEFAULT_MAX_MESSAGE_SIZE = 4_194_304;
/** Default message size at and above which senders compress. */
export const DEFAULT_COMPRESS_THRESHOLD = 256;
/** Default calls in flight per connection. */
export const DEFAULT_MAX_CONCURRENT_CALLS = 1024;
/** Default idle timeout of the server, in milliseconds. */
export const DEFAULT_IDLE_TIMEOUT_MILLIS = 300_000;
/** Largest PING payload. */
export const MAX_PING_PAYLOAD = 64;

/** Frame kinds (the kind byte). */
export enum FrameKind {
  SETTINGS = 0x01,
  REQUEST = 0x02,
  MESSAGE = 0x03,
  HALF_CLOSE = 0x04,
  RESPONSE = 0x05,
  STATUS = 0x06,
  CANCEL = 0x07,
  PING = 0x08,
  PONG = 0x09,
  GOAWAY = 0x0a,
}

/** Frame flag bits. */
export const Flags = {
  /** The message bytes are one snappy block. */
  COMPRESSED: 0x01,
  /** The REQUEST header binds a method ref to a method name. */
  METHOD_NAME: 0x02,
  /** The REQUEST header carries a deadline budget. */
  DEADLINE: 0x04,
  /** The REQUEST header carries metadata. */
  METADATA: 0x08,
} as const;

/** Returns the name of a frame kind ("REQUEST"), or undefined if unknown. */
export function kindName(kind: number): string | undefined {
  return FrameKind[kind] as string | undefined;
}

/** Reports whether kind is a v1 frame kind. */
export function isKnownKind(kind: number): kind is FrameKind {
  return kind >= FrameKind.SETTINGS && kind <= FrameKind.GOAWAY;
}

/** One frame: header fields and payload (the bytes after the id). */
export interface Frame {
  kind: FrameKind;
  flags: number;
  id: number;
  payload: Uint8Array;
}

/**
 * The decoding errors of the wire test vectors. Frame-level: BAD_MAGIC,
 * FRAME_TOO_LARGE, FRAME_TOO_SMALL, UNKNOWN_KIND, TRUNCATED. Message-level:
 * MESSAGE_TOO_LARGE, CORRUPT_MESSAGE, INVALID_PROTOBUF. Payload-level:
 * BAD_HEADER (a malformed REQUEST header), BAD_PAYLOAD (a malformed
 * SETTINGS, PING or GOAWAY payload).
 */
export type WireErrorCode =
  | "BAD_MAGIC"
  | "FRAME_TOO_LARGE"
  | "FRAME_TOO_SMALL"
  | "UNKNOWN_KIND"
  | "TRUNCATED"
  | "MESSAGE_TOO_LARGE"
  | "CORRUPT_MESSAGE"
  | "INVALID_PROTOBUF"
  | "BAD_HEADER"
  | "BAD_PAYLOAD";

/** An error decoding bytes of the raw TCP protocol. */
export class WireError extends Error {
  override name = "WireError";
  constructor(
    readonly code: WireErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** Allocates the bytes of an encoded frame. */
export type FrameAllocator = (size: number) => Uint8Array;

const newBytes: FrameAllocator = (size) => new Uint8Array(size);

/**
 * Encodes one frame: length prefix, kind, flags, id, payload, in bytes from
 * alloc (default: a new Uint8Array; a Node socket's carrier passes
 * Buffer.allocUnsafe, which socket.write takes without a conversion).
 */
export function encodeFrame(kind: FrameKind, flags: number, id: number, payload: Uint8Array = EMPTY, alloc: FrameAllocator = newBytes): Uint8Array {
  const buf = alloc(FRAME_OVERHEAD + payload.length);
  // Byte by byte, not through a DataView: asking a small Uint8Array for its
  // .buffer makes V8 move it off the heap, which costs more than the frame.
  const length = HEADER_SIZE + payload.length;
  buf[0] = length >>> 24;
  buf[1] = (length >>> 16) & 0xff;
  buf[2] = (length >>> 8) & 0xff;
  buf[3] = length & 0xff;
  buf[4] = kind;
  buf[5] = flags;
  buf[6] = id >>> 24;
  buf[7] = (id >>> 16) & 0xff;
  buf[8] = (id >>> 8) & 0xff;
  buf[9] = id & 0xff;
  buf.set(payload, FRAME_OVERHEAD);
  return buf;
}

/**
 * Decodes a client preface and returns its version byte. Fails with
 * BAD_MAGIC as soon as the first four bytes are not "CALC" and with
 * TRUNCATED if the bytes end first. Checking the version is up to the
 * caller (the server answers an unknown one with GOAWAY).
 */
export function decodePreface(bytes: Uint8Array): { version: number; rest: Uint8Array } {
  for (let i = 0; i < MAGIC.length; i++) {
    if (i >= bytes.length) {
      throw new WireError("TRUNCATED", `preface ended after ${bytes.length} bytes`);
    }
    if (bytes[i] !== MAGIC[i]) {
      // Only the first four bytes decide, exactly as the server does.
      if (bytes.length < MAGIC.length) {
        throw new WireError("TRUNCATED", `preface ended after ${bytes.length} bytes`);
      }
      throw new WireError("BAD_MAGIC", `preface starts with ${hex(bytes.subarray(0, MAGIC.length))}, not 43414c43 (CALC)`);
    }
  }
  if (bytes.length < PREFACE.length) {
    throw new WireError("TRUNCATED", "preface ended before its version byte");
  }
  return { version: bytes[MAGIC.length], rest: bytes.subarray(PREFACE.length) };
}

/**
 * FrameDecoder turns a byte stream into frames. Feed it chunks as they arrive
 * with push(); call end() when the stream ends. A length prefix is checked
 * against the max frame size (and the 6-byte minimum) before anything else:
 * nothing is allocated for a frame until all its bytes have arrived, and then
 * only the frame itself (in the common case not even that: the frame is a
 * view of the chunk it came in).
 *
 * Errors are sticky: after push() throws, the decoder is dead.
 */
export class FrameDecoder {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private failed: WireError | undefined;

  constructor(readonly maxFrameSize: number = DEFAULT_MAX_FRAME_SIZE) {}

  /** Bytes received but not yet returned as frames. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Adds bytes and returns every frame they complete, in order. */
  push(chunk: Uint8Array): Frame[] {
    if (this.failed) {
      throw this.failed;
    }
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames: Frame[] = [];
    try {
      for (;;) {
        const f = this.next();
        if (!f) {
          return frames;
        }
        frames.push(f);
      }
    } catch (e) {
      if (e instanceof WireError) {
        this.failed = e;
        // Frames decoded before the error are still good: attach them.
        (e as WireError & { frames?: Frame[] }).frames = frames;
      }
      throw e;
    }
  }

  /** Signals the end of the stream: throws TRUNCATED if it ended inside a frame. */
  end(): void {
    if (this.failed) {
      throw this.failed;
    }
    if (this.buffered > 0) {
      this.failed = new WireError("TRUNCATED", `stream ended ${this.buffered} bytes into a frame`);
      throw this.failed;
    }
  }

  private next(): Frame | undefined {
    if (this.buffered < LENGTH_SIZE) {
      return undefined;
    }
    const prefix = this.peek(LENGTH_SIZE);
    const length = ((prefix[0] << 24) | (prefix[1] << 16) | (prefix[2] << 8) | prefix[3]) >>> 0;
    if (length > this.maxFrameSize) {
      throw new WireError("FRAME_TOO_LARGE", `frame length ${length} > max frame size ${this.maxFrameSize}`);
    }
    if (length < HEADER_SIZE) {
      throw new WireError("FRAME_TOO_SMALL", `frame length ${length} < ${HEADER_SIZE}`);
    }
    const total = LENGTH_SIZE + length;
    if (this.buffered < total) {
      return undefined;
    }
    const raw = this.take(total);
    const kind = raw[4];
    const flags = raw[5];
    const id = ((raw[6] << 24) | (raw[7] << 16) | (raw[8] << 8) | raw[9]) >>> 0;
    if (!isKnownKind(kind)) {
      throw new WireError("UNKNOWN_KIND", `frame kind 0x${kind.toString(16).padStart(2, "0")}`);
    }
    return { kind, flags, id, payload: raw.subarray(FRAME_OVERHEAD) };
  }

  /** Returns the first n buffered bytes without consuming them (n is small). */
  private peek(n: number): Uint8Array {
    const first = this.chunks[0];
    if (first.length >= n) {
      return first;
    }
    const out = new Uint8Array(n);
    let off = 0;
    for (const c of this.chunks) {
      const m = Math.min(c.length, n - off);
      out.set(c.subarray(0, m), off);
      off += m;
      if (off === n) {
        break;
      }
    }
    return out;
  }

  /** Consumes and returns the first n buffered bytes. */
  private take(n: number): Uint8Array {
    this.buffered -= n;
    const first = this.chunks[0];
    if (first.length >= n) {
      if (first.length === n) {
        this.chunks.shift();
      } else {
        this.chunks[0] = first.subarray(n);
      }
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0];
      const m = Math.min(c.length, n - off);
      out.set(c.subarray(0, m), off);
      off += m;
      if (m === c.length) {
        this.chunks.shift();
      } else {
        this.chunks[0] = c.subarray(m);
      }
    }
    return out;
  }
}

/** Lower-case hex of bytes. */
export function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) {
    s += HEX[b];
  }
  return s;
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
