// TLS and bearer-token options shared by both transports, named as in the Go
// client (client/dial) and the Python client (calc_client.security):
// tls, tlsCa, tlsCert, tlsKey, tlsServerName and token.
//
// - Any tls* option turns TLS on (tls: true alone trusts Node's root CAs).
//   Both transports require TLS 1.3; raw TCP offers ALPN "calc/1" and refuses
//   a server that does not select it (PROTOCOL.md, "TLS"), gRPC offers "h2".
// - token is sent as "authorization: Bearer <token>" metadata on every call.
//   Like grpc-go's RequireTransportSecurity, it is refused in plaintext to a
//   host that is not localhost or a loopback IP address: anyone on the path
//   could read it and call as its principal.

import { readFileSync } from "node:fs";
import * as net from "node:net";
import * as tls from "node:tls";
import { Code } from "@connectrpc/connect";
import { CalcError } from "./errors.js";

/** The ALPN protocol id of calc's raw TCP protocol over TLS. */
export const ALPN_CALC = "calc/1";

/** A PEM file's path, or its contents. */
export type PemSource = string | Uint8Array;

/** TLS options of a client, as the Go client's --tls flags. Any of them turns TLS on. */
export interface TlsOptions {
  /** Connect over TLS 1.3, trusting Node's root CAs unless tlsCa is set (--tls). */
  tls?: boolean;
  /** CA certificates to trust instead of Node's roots (--tls-ca): a PEM file's path, or PEM bytes. */
  tlsCa?: PemSource;
  /** Client certificate chain for mutual TLS, with tlsKey (--tls-cert): a PEM file's path, or PEM bytes. */
  tlsCert?: PemSource;
  /** Private key of tlsCert (--tls-key): a PEM file's path, or PEM bytes. */
  tlsKey?: PemSource;
  /**
   * Name to verify the server's certificate against, and to send as SNI when
   * it is a host name (--tls-server-name); default: the host dialled. The
   * override gRPC calls grpc.ssl_target_name_override.
   */
  tlsServerName?: string;
}

/** TLS plus the bearer token. */
export interface SecurityOptions extends TlsOptions {
  /**
   * Bearer token sent as "authorization: Bearer <token>" on every call;
   * refused in plaintext to a host that is not loopback. The conformance
   * runner reads it from CALC_TOKEN.
   */
  token?: string;
}

/** Reports whether any option asks for TLS. */
export function tlsEnabled(o: TlsOptions): boolean {
  return Boolean(o.tls || o.tlsCa || o.tlsCert || o.tlsKey || o.tlsServerName);
}

function readPem(what: string, src: PemSource): Buffer {
  if (typeof src !== "string") {
    return Buffer.from(src);
  }
  try {
    return readFileSync(src);
  } catch (e) {
    throw new CalcError(`${what}: ${(e as Error).message}`, Code.InvalidArgument, { cause: e });
  }
}

/** The PEM material of o, read once: what a connection attempt needs. */
export interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  serverName?: string;
}

/**
 * Reads o's files (undefined when TLS is off). Throws a CalcError
 * INVALID_ARGUMENT for an unreadable file or a certificate without its key.
 */
export function loadTls(o: TlsOptions): TlsMaterial | undefined {
  if (!tlsEnabled(o)) {
    return undefined;
  }
  if (Boolean(o.tlsCert) !== Boolean(o.tlsKey)) {
    throw new CalcError("tlsCert and tlsKey go together", Code.InvalidArgument);
  }
  return {
    ca: o.tlsCa ? readPem("tlsCa", o.tlsCa) : undefined,
    cert: o.tlsCert ? readPem("tlsCert", o.tlsCert) : undefined,
    key: o.tlsKey ? readPem("tlsKey", o.tlsKey) : undefined,
    serverName: o.tlsServerName || undefined,
  };
}

/**
 * Options for tls.connect to host:port: TLS 1.3 at least, ALPN alpn, the
 * server's certificate verified against m.serverName or host. SNI is sent
 * only for a host name (RFC 6066 forbids an IP address there).
 */
export function tlsConnectOptions(m: TlsMaterial, host: string, port: number, alpn: string): tls.ConnectionOptions {
  const name = m.serverName ?? host;
  const opts: tls.ConnectionOptions = {
    host,
    port,
    minVersion: "TLSv1.3",
    ALPNProtocols: [alpn],
    ca: m.ca,
    cert: m.cert,
    key: m.key,
    rejectUnauthorized: true,
  };
  if (net.isIP(name) === 0) {
    opts.servername = name;
  }
  // Node verifies against servername, else host; an IP override is neither.
  opts.checkServerIdentity = (_host, cert) => tls.checkServerIdentity(name, cert);
  return opts;
}

const loopbackAddresses = new net.BlockList();
loopbackAddresses.addSubnet("127.0.0.0", 8, "ipv4");
loopbackAddresses.addAddress("::1", "ipv6");
loopbackAddresses.addSubnet("::ffff:127.0.0.0", 104, "ipv6");

/** Reports whether host is "localhost" or a loopback IP address (as the Go client decides). */
export function isLoopback(host: string): boolean {
  const h = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  if (h === "localhost") {
    return true;
  }
  const family = net.isIP(h);
  return family !== 0 && loopbackAddresses.check(h, family === 4 ? "ipv4" : "ipv6");
}

/**
 * Refuses (CalcError INVALID_ARGUMENT) a token sent in plaintext to a host
 * that is not loopback, and a token that cannot be a header value.
 */
export function checkToken(token: string | undefined, secure: boolean, host: string): void {
  if (!token) {
    return;
  }
  if (!secure && !isLoopback(host)) {
    throw new CalcError(
      `refusing to send the token in plaintext to ${host}, which is not a loopback address: use TLS (tls: true or tlsCa)`,
      Code.InvalidArgument,
    );
  }
  if (!/^[\x20-\x7e]+$/.test(token)) {
    throw new CalcError("the token must be printable ASCII on one line", Code.InvalidArgument);
  }
}

/** The authorization metadata value of a token. */
export function bearer(token: string): string {
  return `Bearer ${token}`;
}

/** What a failed TLS connection means, for the error message; undefined if nothing to add. */
export function tlsHint(err: unknown, serverName: string): string | undefined {
  const code = (err as { code?: string } | undefined)?.code ?? "";
  switch (code) {
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "UNABLE_TO_GET_ISSUER_CERT":
    case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
    case "CERT_UNTRUSTED":
      return "the server's certificate is not signed by a CA this client trusts (tlsCa)";
    case "ERR_TLS_CERT_ALTNAME_INVALID":
      return `the server's certificate is not valid for ${serverName} (tlsServerName)`;
    case "CERT_HAS_EXPIRED":
    case "CERT_NOT_YET_VALID":
      return "the server's certificate is outside its validity period";
    case "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED":
      return "the server requires a client certificate (mutual TLS: tlsCert and tlsKey)";
    case "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA":
    case "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE":
    case "ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR":
      return "the server refused the client certificate (tlsCert)";
    case "ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL":
      return "the server does not speak this protocol over TLS (ALPN)";
    case "ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION":
    case "ERR_SSL_UNSUPPORTED_PROTOCOL":
      return "the server does not speak TLS 1.3";
    case "ERR_SSL_WRONG_VERSION_NUMBER":
    case "ERR_SSL_PACKET_LENGTH_TOO_LONG":
    case "ECONNRESET":
    case "EPIPE":
      return "the server closed the connection or answered in plaintext during the TLS handshake: is this a plaintext port?";
    default:
      return undefined;
  }
}
