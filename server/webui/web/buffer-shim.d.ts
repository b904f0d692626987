// src/wire/frame.ts, which the browser transport shares with the Node
// transports, has two functions that use Node's Buffer (encodeFrame, hex).
// The browser transport never calls them (src/ws/codec.ts has its own) and
// the bundle leaves them out. This declaration lets the page's type check,
// which has the DOM's types and none of Node's, pass over them: any other
// Node API in what the page imports fails it.
declare const Buffer: {
  allocUnsafe(size: number): Buffer;
  from(buf: ArrayBufferLike, byteOffset?: number, length?: number): { toString(encoding: "hex"): string };
};
type Buffer = Uint8Array & { writeUInt32BE(value: number, offset: number): number };
