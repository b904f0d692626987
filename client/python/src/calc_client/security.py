"""TLS and bearer-token options shared by both clients, named as in the Go
client (client/dial): ``tls``, ``tls_ca``, ``tls_cert``, ``tls_key``,
``tls_server_name`` and ``token``.

* Any of the ``tls_*`` options turns TLS on (``tls=True`` alone trusts the
  system's roots). Raw TCP needs TLS 1.3 and ALPN ``calc/1`` (PROTOCOL.md,
  "TLS"); :func:`tcp_ssl_context` builds such a context.
* ``token`` is sent as ``authorization: Bearer <token>`` metadata on every
  call. Like grpc-go's RequireTransportSecurity, :func:`check_token` refuses
  to send it in plaintext to a host that is not ``localhost`` or a loopback
  IP address: anyone on the path could read it and call as its principal.
"""
from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ALPN", "TlsOptions", "tcp_ssl_context", "check_token", "is_loopback", "bearer"]

ALPN = "calc/1"


@dataclass(frozen=True)
class TlsOptions:
    """The client's TLS configuration (the Go client's --tls flags)."""

    enabled: bool = False  # --tls: TLS with the system's roots unless ca is set
    ca: str | None = None  # --tls-ca: PEM file of the CA certificates to trust instead of the system's
    cert: str | None = None  # --tls-cert: PEM client certificate, for mutual TLS (with key)
    key: str | None = None  # --tls-key: its PEM private key
    server_name: str | None = None  # --tls-server-name: name to verify the certificate against

    @property
    def on(self) -> bool:
        return bool(self.enabled or self.ca or self.cert or self.key or self.server_name)

    def check(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ValueError("tls_cert and tls_key go together")

    def read(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """(root certificates, private key, certificate chain) as PEM bytes, for grpc.ssl_channel_credentials."""
        self.check()
        return tuple(Path(p).read_bytes() if p else None for p in (self.ca, self.key, self.cert))  # type: ignore


def tcp_ssl_context(opts: TlsOptions) -> ssl.SSLContext:
    """A client context for calc's raw TCP: TLS 1.3 at least, ALPN calc/1, the server verified."""
    opts.check()
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=opts.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols([ALPN])
    if opts.cert:
        ctx.load_cert_chain(opts.cert, opts.key)
    return ctx


def is_loopback(host: str) -> bool:
    """Whether host is "localhost" or a loopback IP address (as the Go client decides)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_token(token: str | None, secure: bool, host: str) -> None:
    """Refuse a token over plaintext to a host that is not loopback (raises ValueError)."""
    if token and not secure and not is_loopback(host):
        raise ValueError(f"refusing to send the token in plaintext to {host}, which is not a loopback address: "
                         "use TLS (tls=True or tls_ca=...)")
    if token and any(c in token for c in "\r\n"):
        raise ValueError("token must be on one line")


def bearer(token: str | None) -> list[tuple[str, str]]:
    """The metadata a token adds to every call."""
    return [("authorization", f"Bearer {token}")] if token else []
