// Opening the byte stream a raw TCP connection runs over: a TCP socket, or
// TLS 1.3 over one with ALPN "calc/1" checked (PROTOCOL.md, "TLS"). The
// protocol itself (CalcTcpConnection) runs over any connected Duplex, and a
// channel takes any Dialer, so another carrier of the same bytes needs only
// a Dialer of its own.

import * as net from "node:net";
import type { Duplex } from "node:stream";
import * as tls from "node:tls";
import { Code } from "@connectrpc/connect";
import { CalcError } from "../errors.js";
import { ALPN_CALC, tlsConnectOptions, tlsHint, type TlsMaterial } from "../security.js";

/** A server's address. */
export interface Endpoint {
  host: string;
  port: number;
}

/** Formats an endpoint as HOST:PORT ("[::1]:4000" for IPv6). */
export function formatEndpoint(e: Endpoint): string {
  return net.isIPv6(e.host) ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/** What a Dialer is given for one connection attempt. */
export interface DialOptions {
  /** Time allowed to connect (and for TLS, to finish the handshake). */
  timeoutMs: number;
  /** Aborted when the attempt is no longer wanted (the channel closed). */
  signal?: AbortSignal;
}

/**
 * Opens a connected byte stream to an endpoint, or rejects with a CalcError
 * (UNAVAILABLE when the server cannot be reached or the handshake failed).
 */
export type Dialer = (endpoint: Endpoint, options: DialOptions) => Promise<Duplex>;

/** Shortens an OpenSSL error message to its reason ("tlsv13 alert certificate required"). */
function shortTlsMessage(msg: string): string {
  const m = /SSL routines:[^:]*:([^:]+):/.exec(msg);
  return (m ? m[1] : msg).trim();
}

/**
 * Describes a socket error as a CalcError UNAVAILABLE, with what it means
 * when it ended a TLS connection before it was usable.
 */
export function connectionError(e: Error, addr: string, opts: { tls?: TlsMaterial; handshake: boolean; host?: string }): CalcError {
  const msg = shortTlsMessage(e.message);
  if (opts.tls && opts.handshake) {
    const hint = tlsHint(e, opts.tls.serverName ?? opts.host ?? addr);
    return new CalcError(`TLS connection to ${addr} failed: ${hint ? `${hint}: ` : ""}${msg}`, Code.Unavailable, { cause: e, safeToRetry: true });
  }
  return new CalcError(`connecting to ${addr}: ${msg}`, Code.Unavailable, { cause: e, safeToRetry: opts.handshake });
}

/**
 * Returns the Dialer of raw TCP: a TCP connection with Nagle off, and with
 * tls set, a TLS 1.3 handshake offering ALPN calc/1 whose result is checked
 * (a server that selects no protocol, or another, is refused before
 * anything is sent).
 */
export function socketDialer(tlsMaterial?: TlsMaterial): Dialer {
  return (endpoint, { timeoutMs, signal }) =>
    new Promise<Duplex>((resolve, reject) => {
      const addr = formatEndpoint(endpoint);
      const socket: net.Socket = tlsMaterial
        ? tls.connect(tlsConnectOptions(tlsMaterial, endpoint.host, endpoint.port, ALPN_CALC))
        : net.connect({ host: endpoint.host, port: endpoint.port });
      socket.setNoDelay(true);
      let done = false;
      const finish = (err?: CalcError) => {
        if (done) {
          return;
        }
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        socket.off("error", onError);
        socket.off("close", onClose);
        if (err) {
          socket.on("error", () => {}); // late errors of a socket given up
          socket.destroy();
          reject(err);
        } else {
          resolve(socket);
        }
      };
      const onError = (e: Error) => finish(connectionError(e, addr, { tls: tlsMaterial, handshake: true, host: endpoint.host }));
      const onClose = () => finish(new CalcError(`connecting to ${addr}: connection closed`, Code.Unavailable, { safeToRetry: true }));
      const onAbort = () => finish(new CalcError(`connecting to ${addr}: cancelled`, Code.Canceled, { cause: signal?.reason, safeToRetry: true }));
      const timer = setTimeout(() => {
        const what = tlsMaterial ? "TCP connection and TLS handshake" : "TCP connection";
        finish(new CalcError(`connecting to ${addr}: no ${what} within ${timeoutMs} ms`, Code.Unavailable, { safeToRetry: true }));
      }, timeoutMs);
      if (signal?.aborted) {
        onAbort();
        return;
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      socket.on("error", onError);
      socket.on("close", onClose);
      if (tlsMaterial) {
        socket.once("secureConnect", () => {
          const got = (socket as tls.TLSSocket).alpnProtocol;
          if (got !== ALPN_CALC) {
            finish(
              new CalcError(`TLS connection to ${addr} failed: the server did not agree to ALPN ${ALPN_CALC} (got ${got ? JSON.stringify(got) : "none"})`, Code.Unavailable, {
                safeToRetry: true,
              }),
            );
            return;
          }
          finish();
        });
      } else {
        socket.once("connect", () => finish());
      }
    });
}
