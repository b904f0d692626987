"""TcpChannel: raw TCP connections to one or more calcd servers, kept
connected, with calls balanced over them and retried when that is safe.

A :class:`~calc_client.tcp.TcpClient` is one connection and stays broken once
lost. A :class:`TcpChannel` is what the Go client's ``tcpconn.Client`` is (and
what a grpc.aio channel is to gRPC): a small load balancer that keeps one
``TcpClient`` per endpoint of its target connected::

    async with TcpChannel("dns:///calc.internal:4000", retry_idempotent=True) as ch:
        resp = await ch.calculate(CalculateRequest(operator=OPERATOR_ADD, lhs=2, rhs=3), timeout=5)

It is asyncio only (the raw TCP client has no synchronous flavour), and
must be created inside a running event loop: it starts connecting at once.

* **Target**: ``"HOST:PORT"``, a list ``"a:4000,b:4000"`` (or a Python list
  of ``"HOST:PORT"``), or ``"dns:///HOST:PORT"``, whose host is resolved to
  all its addresses: at once, again after every lost connection and failed
  attempt, and every ``resolve_interval`` (30 s). Endpoints that disappear
  are closed once their calls end.
* **Reconnecting**: each endpoint reconnects on its own, at once after
  losing a READY connection (or after a GOAWAY), then with gRPC's connection
  backoff (:class:`~calc_client.backoff.Backoff`: 1 s, x1.6 per failure up
  to 120 s, ±20% jitter), each attempt given at least
  ``min_connect_timeout`` (20 s); a successful handshake resets it.
* **Balancing**: calls go to the READY connections in turn (``round_robin``)
  or to the less busy of two picked at random (``power_of_two_choices``).
  With none READY a call waits while an endpoint is CONNECTING and fails fast
  with UNAVAILABLE once every one is in TRANSIENT_FAILURE, as gRPC's calls
  do; with ``wait_for_ready`` it waits until its deadline.
* **Retry**: a call the server never processed (above a GOAWAY's last
  accepted id, or not yet sent when its connection was lost:
  ``CalcError.safe_to_retry``) is made again on another connection under the
  same deadline, at most ``max_attempts`` (5) attempts in all. With
  ``retry_idempotent`` so is a unary call that failed with UNAVAILABLE
  although the server may have processed it, after ``retry_backoff`` (100 ms,
  x1.6, at most 1 s). Streams are never retried once opened.
* **State**: :attr:`TcpChannel.state` is a ``grpc.ChannelConnectivity``
  aggregated as gRPC's round_robin does; :meth:`TcpChannel.wait_for_state_change`
  and :meth:`TcpChannel.wait_ready` wait on it.

The TLS and token options are :class:`TcpClient`'s, applied to every
connection; a ``dns:///`` target's certificate is verified against its host
name, not the addresses it resolved to.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import ssl as _ssl
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

import grpc
from google.protobuf.message import Message

from . import wire
from .backoff import DEFAULT_BACKOFF, DEFAULT_MIN_CONNECT_TIMEOUT, DEFAULT_RETRY_BACKOFF, Backoff
from .errors import CalcError
from .gen.calculator.v1 import calculator_pb2 as pb
from .security import TlsOptions, check_token, tcp_ssl_context
from .service import CALCULATE, CALCULATE_STREAM, EVALUATE, Method
from .tcp import Metadata, TcpClient, TcpStream

__all__ = ["TcpChannel", "ROUND_ROBIN", "POWER_OF_TWO_CHOICES", "DEFAULT_MAX_ATTEMPTS", "DEFAULT_RESOLVE_INTERVAL",
           "parse_target"]

log = logging.getLogger(__name__)

_SC = grpc.StatusCode
State = grpc.ChannelConnectivity

ROUND_ROBIN = "round_robin"
"""Take the READY connections in turn."""
POWER_OF_TWO_CHOICES = "power_of_two_choices"
"""Of two READY connections picked at random, take the one with fewer calls in flight."""

DEFAULT_MAX_ATTEMPTS = 5
"""The attempts a TcpChannel makes of one call, at most."""
DEFAULT_RESOLVE_INTERVAL = 30.0
"""How often a dns:/// target is resolved again while nothing else asks, in seconds."""

DNS_SCHEME = "dns:///"

LookupHost = Callable[[str], Awaitable[Sequence[str]]]


def _err(code: grpc.StatusCode, message: str, **kw) -> CalcError:
    return CalcError(code, message, transport="tcp", local=True, **kw)


# --- targets ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A parsed target: a static list of (host, port), or a host to resolve by
    DNS and the port to use with each of its addresses."""

    static: tuple[tuple[str, int], ...] = ()
    host: str = ""  # for dns:///HOST:PORT
    port: int = 0

    @property
    def dns(self) -> bool:
        return not self.static


def _split(addr: str, whole: str) -> tuple[str, int]:
    host, sep, port = addr.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        sep = ""  # an IPv6 address needs brackets: [::1]:4000
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"target {whole!r}: {addr.strip()!r} is not HOST:PORT")
    return host, int(port)


def join_host_port(host: str, port: int) -> str:
    """HOST:PORT, with brackets around an IPv6 address."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_target(target: str | Sequence[str]) -> Target:
    """Parse ``"HOST:PORT"``, ``"HOST:PORT,HOST:PORT,..."``, a list of
    ``"HOST:PORT"``, or ``"dns:///HOST:PORT"``; ValueError if malformed."""
    if isinstance(target, str):
        if target.startswith(DNS_SCHEME):
            host, port = _split(target[len(DNS_SCHEME):], target)
            return Target(host=host, port=port)
        if "://" in target:
            raise ValueError(f"target {target!r}: the only scheme is dns:///")
        addrs = target.split(",")
    else:
        addrs = list(target)
        if not all(isinstance(a, str) for a in addrs):
            raise ValueError(f"target {target!r}: want a list of 'HOST:PORT' strings")
    if not addrs:
        raise ValueError("target: no address")
    return Target(static=tuple(_split(a, str(target)) for a in addrs))


async def _lookup_host(host: str) -> list[str]:
    """The host's IP addresses, IPv4 and IPv6, by getaddrinfo (in the loop's executor)."""
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


# --- the channel --------------------------------------------------------------------


class _SubConn:
    """One endpoint of a TcpChannel: its task connects, waits for the
    connection to become unusable (lost, GOAWAY), and connects again, with
    backoff after failures."""

    def __init__(self, ch: "TcpChannel", host: str, port: int) -> None:
        self.ch = ch
        self.host = host
        self.port = port
        self.addr = join_host_port(host, port)
        self.state = State.CONNECTING  # CONNECTING, READY or TRANSIENT_FAILURE
        self.conn: TcpClient | None = None  # while READY
        self.old: list[TcpClient] = []  # connections after their GOAWAY, still answering accepted calls
        self.removed = False
        self.task = ch._loop.create_task(self._run(), name=f"calc tcp channel {self.addr}")

    def conns(self) -> list[TcpClient]:
        return [c for c in (self.conn, *self.old) if c is not None and not c.closed]

    async def _run(self) -> None:
        """The first attempt starts at once, and so does the first after a
        READY connection ends; after a failed attempt the next starts the
        backoff delay after the failed one started."""
        ch, loop = self.ch, self.ch._loop
        retries = 0
        while not (ch._closed or self.removed):
            wait = ch._backoff.delay(retries)
            next_at = loop.time() + wait
            try:
                conn = await ch._connect(self, max(wait, ch._min_connect_timeout))
            except CalcError as e:
                err = e
            except Exception as e:  # not CalcError: still an endpoint that cannot be used now
                log.warning("calc tcp channel %s: connection attempt failed: %r", self.addr, e)
                err = _err(_SC.UNAVAILABLE, f"connect to {self.addr}: {e!r}")
            else:
                if ch._closed or self.removed:  # asyncio.wait_for may swallow a cancel (Python < 3.12)
                    await conn.close()
                    return
                retries = 0
                ch._set_state(self, State.READY, conn)
                await conn.wait_unusable()
                ch._lost(self, conn)
                ch._request_resolve()
                self.old = [c for c in self.old if not c.closed]
                if not conn.closed:
                    self.old.append(conn)
                continue
            log.debug("calc tcp channel %s: %s", self.addr, err.message)
            ch._set_state(self, State.TRANSIENT_FAILURE, None, err)
            ch._request_resolve()
            retries += 1
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            ch._set_state(self, State.CONNECTING)


class TcpChannel:
    """Raw TCP connections to every endpoint of ``target``, kept connected,
    with calls balanced over the READY ones and retried when that is safe.
    The options are the Go client's ``tcpconn.ClientOptions`` in Python style
    (see the module doc); the TLS, token and per-connection options are
    :meth:`TcpClient.connect`'s.

    Args:
        target: ``"HOST:PORT"``, ``"HOST:PORT,HOST:PORT"``, a list of
            ``"HOST:PORT"``, or ``"dns:///HOST:PORT"``.
        balancer: ``"round_robin"`` (default) or ``"power_of_two_choices"``.
        backoff: spaces the connection attempts to one endpoint; default
            gRPC's ``Backoff(1.0, 1.6, 0.2, 120.0)``. Any positive values are
            accepted: loopback tests use milliseconds.
        min_connect_timeout: the least time one connection attempt, TLS
            handshake and SETTINGS included, is given (default 20 s).
        resolve_interval: how often a dns:/// target is resolved again
            while nothing else asks (default 30 s).
        lookup_host: ``async (host) -> [ip, ...]`` resolving a dns:///
            target's host; default getaddrinfo.
        wait_for_ready: calls that find no READY connection wait for one
            until their deadline instead of failing fast with UNAVAILABLE
            when every endpoint is in TRANSIENT_FAILURE (a call's own
            ``wait_for_ready=`` wins).
        retry_idempotent: retry a unary call that failed with UNAVAILABLE
            although the server may have processed it (its connection was
            lost, or the server ended it while shutting down), spaced by
            ``retry_backoff``, within its deadline and ``max_attempts``. Set it
            only when every unary method called is idempotent, as calc's are.
        retry_backoff: default ``Backoff(0.1, 1.6, 0.2, 1.0)``.
        max_attempts: attempts of one call at most, retries of calls the
            server never processed included (default 5).
    """

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        balancer: str = ROUND_ROBIN,
        backoff: Backoff = DEFAULT_BACKOFF,
        min_connect_timeout: float = DEFAULT_MIN_CONNECT_TIMEOUT,
        resolve_interval: float = DEFAULT_RESOLVE_INTERVAL,
        lookup_host: LookupHost | None = None,
        wait_for_ready: bool = False,
        retry_idempotent: bool = False,
        retry_backoff: Backoff = DEFAULT_RETRY_BACKOFF,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        tls: bool = False,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_server_name: str | None = None,
        ssl: _ssl.SSLContext | None = None,
        token: str | None = None,
        max_frame_size: int = wire.DEFAULT_MAX_FRAME_SIZE,
        max_message_size: int = wire.DEFAULT_MAX_MESSAGE_SIZE,
        compress: bool = True,
        keepalive: bool = True,
        deadline_grace: float = 0.0,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.target = parse_target(target)
        if balancer not in (ROUND_ROBIN, POWER_OF_TWO_CHOICES):
            raise ValueError(f"balancer must be {ROUND_ROBIN!r} or {POWER_OF_TWO_CHOICES!r}, not {balancer!r}")
        if not min_connect_timeout > 0 or not resolve_interval > 0:
            raise ValueError("min_connect_timeout and resolve_interval must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._balancer = balancer
        self._backoff = backoff
        self._min_connect_timeout = float(min_connect_timeout)
        self._resolve_interval = float(resolve_interval)
        self._lookup_host = lookup_host or _lookup_host
        self._wait_for_ready = wait_for_ready
        self._retry_idempotent = retry_idempotent
        self._retry_backoff = retry_backoff
        self._max_attempts = max_attempts

        # TLS: one context for every connection; a dns:/// target's name is
        # what its certificate must carry.
        tls_opts = TlsOptions(enabled=tls, ca=tls_ca, cert=tls_cert, key=tls_key, server_name=tls_server_name)
        self._ssl = ssl if ssl is not None else (tcp_ssl_context(tls_opts) if tls_opts.on else None)
        for host in [h for h, _ in self.target.static] or [self.target.host]:
            check_token(token, self._ssl is not None, host)
        self._server_name = None
        if self._ssl is not None:
            self._server_name = tls_server_name or (self.target.host if self.target.dns else None)
        self._conn_options = dict(token=token, max_frame_size=max_frame_size, max_message_size=max_message_size,
                                  compress=compress, keepalive=keepalive, deadline_grace=deadline_grace)

        self._subs: list[_SubConn] = []  # in the resolver's order
        self._ready: list[_SubConn] = []
        self._next = 0  # round robin's counter
        self._state = State.CONNECTING
        self._changed = asyncio.Event()  # set (and replaced) at each change of state
        self._last_error: CalcError | None = None
        self._closed = False
        self._drains: set[asyncio.Task] = set()
        self._resolve_now = asyncio.Event()
        self._resolver: asyncio.Task | None = None
        if self.target.dns:
            self._resolver = self._loop.create_task(self._resolve_loop(), name="calc tcp channel resolver")
        else:
            self._set_addrs(list(self.target.static))

    async def __aenter__(self) -> "TcpChannel":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # --- state ----------------------------------------------------------------------

    @property
    def state(self) -> grpc.ChannelConnectivity:
        """The connectivity state, aggregated over the endpoints as gRPC's
        round_robin does: READY if any is, else CONNECTING if any is, else
        TRANSIENT_FAILURE; SHUTDOWN after close. An endpoint that failed to
        connect counts as TRANSIENT_FAILURE until it is READY again, through
        its later attempts. A channel starts CONNECTING and is never IDLE."""
        return self._state

    @property
    def endpoints(self) -> dict[str, grpc.ChannelConnectivity]:
        """Each endpoint's (HOST:PORT) state, in the resolver's order."""
        return {sc.addr: sc.state for sc in self._subs}

    @property
    def last_error(self) -> CalcError | None:
        """The last connection or resolution failure."""
        return self._last_error

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_for_state_change(self, last_observed: grpc.ChannelConnectivity,
                                    timeout: float | None = None) -> bool:
        """Wait until the state differs from ``last_observed`` and return
        True, or return False once ``timeout`` seconds have passed."""
        deadline = None if timeout is None else self._loop.time() + timeout
        while self._state is last_observed:
            if not await self._wait_change(deadline):
                return False
        return True

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until a connection is READY. Raises the last connection error
        (a CalcError, UNAVAILABLE for an endpoint that could not be reached)
        once every endpoint has failed to connect, CANCELLED after close, and
        DEADLINE_EXCEEDED if ``timeout`` passes first."""
        deadline = None if timeout is None else self._loop.time() + timeout
        while True:
            st = self._state
            if st is State.READY:
                return
            if st is State.TRANSIENT_FAILURE:
                raise self._no_server()
            if st is State.SHUTDOWN:
                raise _err(_SC.CANCELLED, "channel closed")
            if not await self._wait_change(deadline):
                raise _err(_SC.DEADLINE_EXCEEDED, f"no connection READY within {timeout}s (state {st.name})")

    async def _wait_change(self, deadline: float | None) -> bool:
        """Wait for the next change of state; False if the deadline passes first."""
        changed = self._changed
        if deadline is None:
            await changed.wait()
            return True
        remaining = deadline - self._loop.time()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(changed.wait(), remaining)
            return True
        except asyncio.TimeoutError:
            return False

    # --- calls ----------------------------------------------------------------------

    async def calculate(self, request: pb.CalculateRequest, *, timeout: float | None = None,
                        metadata: Metadata | None = None, wait_for_ready: bool | None = None) -> pb.CalculateResponse:
        return await self.unary(CALCULATE, request, timeout=timeout, metadata=metadata, wait_for_ready=wait_for_ready)

    async def evaluate(self, request: pb.EvaluateRequest, *, timeout: float | None = None,
                       metadata: Metadata | None = None, wait_for_ready: bool | None = None) -> pb.EvaluateResponse:
        return await self.unary(EVALUATE, request, timeout=timeout, metadata=metadata, wait_for_ready=wait_for_ready)

    async def calculate_stream(self, *, timeout: float | None = None, metadata: Metadata | None = None,
                               wait_for_ready: bool | None = None) -> TcpStream:
        """Open a CalculateStream call on a READY connection (see open_stream)."""
        return await self.open_stream(CALCULATE_STREAM, timeout=timeout, metadata=metadata,
                                      wait_for_ready=wait_for_ready)

    async def unary(self, method: Method | str, request: Message, *, timeout: float | None = None,
                    metadata: Metadata | None = None, wait_for_ready: bool | None = None) -> Message:
        """Call a unary method on a READY connection and return its response.
        ``timeout`` bounds the whole call, waits and retries included; each
        attempt sends the server what is left of it."""
        wait = self._wait_for_ready if wait_for_ready is None else wait_for_ready
        deadline = None if timeout is None else self._loop.time() + timeout
        retries = 0  # of calls that may have been processed (retry_idempotent)
        attempt = 0
        while True:
            attempt += 1
            sc, conn = await self._pick(deadline, wait)
            try:
                return await conn.unary(method, request, metadata=metadata,
                                        timeout=None if deadline is None else deadline - self._loop.time())
            except CalcError as e:
                if not await self._retry(sc, conn, e, attempt, deadline, self._retry_idempotent, retries):
                    raise
                if not e.safe_to_retry:
                    retries += 1

    async def open_stream(self, method: Method | str, *, timeout: float | None = None,
                          metadata: Metadata | None = None, wait_for_ready: bool | None = None) -> TcpStream:
        """Open a streaming call on a READY connection. Once opened it is never
        retried: a stream the server refused with GOAWAY ends with a CalcError
        whose ``safe_to_retry`` is set, and the caller may open it again."""
        wait = self._wait_for_ready if wait_for_ready is None else wait_for_ready
        deadline = None if timeout is None else self._loop.time() + timeout
        attempt = 0
        while True:
            attempt += 1
            sc, conn = await self._pick(deadline, wait)
            try:
                return conn.open_stream(method, metadata=metadata,
                                        timeout=None if deadline is None else deadline - self._loop.time())
            except CalcError as e:
                if not await self._retry(sc, conn, e, attempt, deadline, False, 0):
                    raise

    async def _retry(self, sc: _SubConn, conn: TcpClient, err: CalcError, attempt: int, deadline: float | None,
                     idempotent: bool, retries: int) -> bool:
        """Whether the call whose attempt on conn failed with err is made
        again: when the server never processed it, or, if idempotent, when it
        failed with UNAVAILABLE and the retry's backoff fits in the deadline
        (it is waited here)."""
        if err.code is not _SC.UNAVAILABLE:
            return False
        if not conn.usable:
            self._lost(sc, conn)  # no more picks of it, before its task sees
        if attempt >= self._max_attempts or self._closed:
            return False
        if deadline is not None and self._loop.time() >= deadline:
            return False
        if err.safe_to_retry:
            log.debug("calc tcp channel %s: retrying a call the server did not process: %s", sc.addr, err.message)
            return True
        if not idempotent:
            return False
        d = self._retry_backoff.delay(retries)
        if deadline is not None and deadline - self._loop.time() < d:
            return False
        log.debug("calc tcp channel %s: retrying in %.3fs a call that failed: %s", sc.addr, d, err.message)
        await asyncio.sleep(d)
        return not self._closed

    async def _pick(self, deadline: float | None, wait: bool) -> tuple[_SubConn, TcpClient]:
        """A READY endpoint and its connection. With none, wait while an
        endpoint is CONNECTING (or, with wait, until the deadline); fail fast
        with UNAVAILABLE once all are in TRANSIENT_FAILURE."""
        while True:
            picked = self._choose()
            if picked is not None:
                return picked
            st = self._state
            if st is State.SHUTDOWN:
                raise _err(_SC.CANCELLED, "channel closed")
            if st is State.TRANSIENT_FAILURE and not wait:
                raise self._no_server()
            if not await self._wait_change(deadline):
                why = f": {self._last_error.message}" if self._last_error is not None else ""
                raise _err(_SC.DEADLINE_EXCEEDED, f"deadline exceeded waiting for a READY connection "
                                                  f"(state {st.name}){why}")

    def _choose(self) -> tuple[_SubConn, TcpClient] | None:
        """Take a READY endpoint by the balancer, or None if there is none.
        A connection found unusable (its loss not yet seen by its task) is
        taken out of the picks."""
        while self._ready:
            rs = self._ready
            if len(rs) == 1:
                sc = rs[0]
            elif self._balancer == POWER_OF_TWO_CHOICES:
                a, b = random.sample(rs, 2)
                sc = b if b.conn is not None and a.conn is not None and b.conn.in_flight < a.conn.in_flight else a
            else:
                sc = rs[self._next % len(rs)]
                self._next += 1
            conn = sc.conn
            if conn is not None and conn.usable:
                return sc, conn
            self._lost(sc, conn)
        return None

    def _no_server(self) -> CalcError:
        why = self._last_error.message if self._last_error is not None else "no endpoint"
        return _err(_SC.UNAVAILABLE, f"no server ready: {why}")

    # --- endpoints ------------------------------------------------------------------

    async def _connect(self, sc: _SubConn, timeout: float) -> TcpClient:
        return await TcpClient.connect(sc.host, sc.port, connect_timeout=timeout, ssl=self._ssl,
                                       tls_server_name=self._server_name, **self._conn_options)

    def _set_state(self, sc: _SubConn, st: grpc.ChannelConnectivity, conn: TcpClient | None = None,
                   err: CalcError | None = None) -> None:
        """Record sc's new state, its connection when READY, and err, a failed
        attempt's error. An endpoint in TRANSIENT_FAILURE stays so through
        its next attempts until READY, as in gRPC's round_robin."""
        if st is not State.CONNECTING or sc.state is not State.TRANSIENT_FAILURE:
            sc.state = st
        sc.conn = conn
        if err is not None:
            self._last_error = err
        self._update()

    def _lost(self, sc: _SubConn, conn: TcpClient | None) -> None:
        """Take conn, which has ended or got GOAWAY, out of the picks if it is
        still sc's: sc is CONNECTING again."""
        if sc.conn is conn:
            sc.conn, sc.state = None, State.CONNECTING
            self._update()

    def _update(self) -> None:
        """Recompute the READY list and the aggregate state; wake the waiters
        if the state changed."""
        self._ready = [sc for sc in self._subs if sc.state is State.READY and sc.conn is not None]
        if self._closed:
            st = State.SHUTDOWN
        elif self._ready:
            st = State.READY
        elif any(sc.state is State.CONNECTING for sc in self._subs) or (not self._subs and self._last_error is None):
            st = State.CONNECTING
        else:
            st = State.TRANSIENT_FAILURE
        if st is not self._state:
            log.debug("calc tcp channel: %s -> %s", self._state.name, st.name)
            self._state = st
            self._changed.set()
            self._changed = asyncio.Event()

    def _set_addrs(self, addrs: list[tuple[str, int]]) -> None:
        """Make addrs the endpoints: start a _SubConn for each new one, in
        order, and remove (drain, then close) those no longer listed."""
        if self._closed:
            return
        old = {sc.addr: sc for sc in self._subs}
        subs: list[_SubConn] = []
        for host, port in addrs:
            addr = join_host_port(host, port)
            if any(sc.addr == addr for sc in subs):
                continue
            subs.append(old.pop(addr, None) or _SubConn(self, host, port))
        self._subs = subs
        self._update()
        for sc in old.values():
            sc.removed = True
            sc.task.cancel()
            for conn in sc.conns():
                self._spawn_drain(conn)

    def _spawn_drain(self, conn: TcpClient) -> None:
        async def drain() -> None:
            idle = asyncio.ensure_future(conn.wait_idle())
            closed = asyncio.ensure_future(conn.wait_closed())
            try:
                await asyncio.wait({idle, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                idle.cancel()
                closed.cancel()
                await conn.close()

        task = self._loop.create_task(drain())
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    def _request_resolve(self) -> None:
        if self._resolver is not None:
            self._resolve_now.set()

    async def _resolve_loop(self) -> None:
        """Resolve the dns:/// target at once, then every resolve_interval and
        whenever an endpoint asks (a lost connection, a failed attempt), and
        after a failure again with backoff. A failure keeps the endpoints
        resolved before."""
        host, port = self.target.host, self.target.port
        wait = 0.0
        retries = 0
        while not self._closed:
            if wait > 0:
                try:
                    await asyncio.wait_for(self._resolve_now.wait(), wait)
                except asyncio.TimeoutError:
                    pass
            self._resolve_now.clear()
            try:
                ips = list(dict.fromkeys(await asyncio.wait_for(self._lookup_host(host), self._min_connect_timeout)))
                if not ips:
                    raise OSError("no addresses")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # whatever the lookup raised: keep resolving
                self._last_error = _err(_SC.UNAVAILABLE, f"resolving {host}: {e!r}")
                self._update()
                wait = self._backoff.delay(retries)
                retries += 1
                continue
            retries = 0
            self._set_addrs([(ip, port) for ip in ips])
            wait = self._resolve_interval

    # --- closing --------------------------------------------------------------------

    async def close(self) -> None:
        """Close every connection and stop connecting; calls in flight fail
        with CANCELLED, and so do later ones. No task of the channel outlives it."""
        if self._closed:
            return
        self._closed = True
        self._update()
        tasks = [sc.task for sc in self._subs] + list(self._drains)
        if self._resolver is not None:
            tasks.append(self._resolver)
        for t in tasks:
            t.cancel()
        conns = [c for sc in self._subs for c in sc.conns()]
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        pending = {t for t in tasks if not t.done()}
        for _ in range(100):  # bounded: a task whose cancel was swallowed sees _closed at its next step
            if not pending:
                break
            _, pending = await asyncio.wait(pending, timeout=0.05)
            for t in pending:
                t.cancel()
