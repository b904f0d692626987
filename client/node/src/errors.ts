// Errors shared by both transports. The gRPC transport (connect-node) throws
// ConnectError; the raw TCP client throws CalcError, a ConnectError subclass
// (so `err instanceof ConnectError`, err.code, err.rawMessage and
// err.findDetails(...) work the same on both) with two extra facts the raw
// TCP protocol can tell: whether the call is safe to retry (GOAWAY) and
// whether the status came from the server or was made by the client.

import { Code, ConnectError } from "@connectrpc/connect";
import type { Any } from "@bufbuild/protobuf/wkt";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import type { BadRequest, ErrorInfo } from "./gen/google/rpc/error_details_pb.js";
import type { RpcStatus } from "./wire/control.js";

export { Code, ConnectError };

/** gRPC status code names by number, as in cases.json ("INVALID_ARGUMENT"). */
export const CODE_NAMES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

/** Returns the gRPC name of a code number ("CODE_42" for unknown numbers). */
export function codeName(code: number): string {
  return CODE_NAMES[code] ?? `CODE_${code}`;
}

/** Where a CalcError's status came from. */
export type StatusSource = "server" | "client";

/** An RPC error from the raw TCP transport; a ConnectError. */
export class CalcError extends ConnectError {
  /**
   * True when the server provably did not process the call (it was above a
   * GOAWAY's last accepted id, or was refused before being sent): it is safe
   * to retry on a new connection.
   */
  readonly safeToRetry: boolean;
  /** "server" for a STATUS/GOAWAY the server sent, "client" otherwise. */
  readonly source: StatusSource;

  constructor(
    message: string,
    code: Code,
    opts: { safeToRetry?: boolean; source?: StatusSource; details?: Any[]; cause?: unknown } = {},
  ) {
    super(message, code, undefined, undefined, opts.cause);
    this.safeToRetry = opts.safeToRetry ?? false;
    this.source = opts.source ?? "client";
    for (const d of opts.details ?? []) {
      // The same shape connect-node gives details parsed from
      // grpc-status-details-bin, so findDetails() works alike.
      this.details.push({ type: d.typeUrl.substring(d.typeUrl.lastIndexOf("/") + 1), value: d.value });
    }
  }

  /**
   * ConnectError's own instanceof check accepts any ConnectError look-alike;
   * `err instanceof CalcError` is true only for errors of this class.
   */
  static override [Symbol.hasInstance](v: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(this, v);
  }

  /** Builds the error for a non-OK google.rpc.Status the server sent. */
  static fromStatus(s: RpcStatus, opts: { safeToRetry?: boolean } = {}): CalcError {
    const code = s.code >= 1 && s.code <= 16 ? (s.code as Code) : Code.Unknown;
    return new CalcError(s.message, code, { safeToRetry: opts.safeToRetry, source: "server", details: s.details });
  }
}

/** The calculator's error details, decoded from an error of either transport. */
export interface CalcErrorDetails {
  errorInfo?: ErrorInfo;
  badRequest?: BadRequest;
}

/** Decodes the google.rpc.ErrorInfo and google.rpc.BadRequest details of err. */
export function errorDetails(err: ConnectError): CalcErrorDetails {
  return {
    errorInfo: err.findDetails(ErrorInfoSchema)[0],
    badRequest: err.findDetails(BadRequestSchema)[0],
  };
}
