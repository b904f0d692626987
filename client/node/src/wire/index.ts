// The raw TCP protocol's wire format, without sockets: frames, preface,
// request headers, messages (snappy), settings, status and goaway payloads.
export * from "./frame.js";
export * from "./varint.js";
export * from "./header.js";
export * from "./message.js";
export * from "./control.js";
