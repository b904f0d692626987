"""asyncio client for calc's raw TCP protocol v1 (PROTOCOL.md).

One :class:`TcpClient` is one connection. Calls are multiplexed on it by id:
any number may be in flight at once and their answers are paired by id, in
whatever order they come back::

    async with await TcpClient.connect("127.0.0.1", 4000) as client:
        resp = await client.calculate(CalculateRequest(operator=OPERATOR_ADD, lhs=2, rhs=3), timeout=1.0)
        many = await asyncio.gather(*(client.calculate(req) for req in reqs))

        stream = client.calculate_stream(timeout=5.0)
        await stream.send(CalculateStreamRequest(id=1, calculation=...))
        await stream.half_close()
        async for resp in stream:
            ...

Failures raise :class:`calc_client.errors.CalcError` with the grpc.StatusCode
and the google.rpc.Status the server sent, exactly like the gRPC client.

What the client does, by PROTOCOL.md section:

* preface, then waits for the server's SETTINGS (a GOAWAY instead means
  refused) and uses its COMPRESS_THRESHOLD, MAX_MESSAGE_SIZE and
  MAX_FRAME_SIZE for what it sends;
* method refs: each method's first REQUEST binds a ref with METHOD_NAME,
  later ones send the ref alone;
* deadlines: ``timeout=`` is sent as a DEADLINE budget in microseconds and
  also enforced locally (then a CANCEL is sent and the call fails with
  DEADLINE_EXCEEDED);
* metadata: ``metadata=[(key, value), ...]``, values ``str`` or ``bytes``
  (keys ending in ``-bin`` carry binary values);
* snappy block compression of messages at or above the threshold when the
  block is smaller; received compressed messages have their decoded length
  checked against ``max_message_size`` before decoding;
* cancel: ``stream.cancel()`` sends CANCEL; the call's final answer is the
  server's STATUS (normally CANCELLED). Cancelling the asyncio task awaiting
  a call sends CANCEL too and fails the call locally;
* PING is answered with PONG; :meth:`TcpClient.ping` measures a round trip;
  the client pings every half IDLE_TIMEOUT_MILLIS to keep the connection;
* GOAWAY: new calls fail UNAVAILABLE; pending calls above the last accepted
  id fail UNAVAILABLE with ``safe_to_retry`` set; the others still get their
  answers until the server closes;
* a closed connection fails every pending call with UNAVAILABLE, with
  ``safe_to_retry`` set on those whose REQUEST had not been handed to the
  socket yet;
* TLS (PROTOCOL.md, "TLS"): ``tls=True`` / ``tls_ca`` / ``tls_cert`` /
  ``tls_key`` / ``tls_server_name`` (or ``ssl=`` a context of your own) wrap
  the whole byte stream in TLS 1.3 with ALPN ``calc/1``, checked after the
  handshake; ``token=`` adds ``authorization: Bearer <token>`` to every
  call, refused in plaintext to a host that is not loopback.

Frames are written whole by one writer: frames queued in the same event-loop
turn are coalesced into one write.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import ssl as _ssl
import struct
from typing import Iterable

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2

from . import wire
from .errors import CalcError, code_from_number
from .gen.calculator.v1 import calculator_pb2 as pb
from .security import ALPN, TlsOptions, bearer, check_token, tcp_ssl_context
from .service import CALCULATE, CALCULATE_STREAM, EVALUATE, METHODS_BY_FULL_NAME, Method
from .stream import MessageReader

__all__ = ["TcpClient", "TcpStream"]

log = logging.getLogger(__name__)

_SC = grpc.StatusCode
Metadata = Iterable[tuple[str, "str | bytes"]]


def _err(code: grpc.StatusCode, message: str, **kw) -> CalcError:
    """A status this client produced itself (not the server's)."""
    return CalcError(code, message, transport="tcp", local=True, **kw)


class _Call:
    __slots__ = ("id", "method", "future", "stream", "timer")

    def __init__(self, call_id: int, method: Method) -> None:
        self.id = call_id
        self.method = method
        self.future: asyncio.Future | None = None  # unary calls
        self.stream: TcpStream | None = None  # streaming calls
        self.timer: asyncio.TimerHandle | None = None


class _Protocol(asyncio.Protocol):
    def __init__(self, client: "TcpClient") -> None:
        self._client = client

    def connection_made(self, transport) -> None:
        self._client._connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._client._data_received(data)

    def eof_received(self):
        return False  # close our side too

    def connection_lost(self, exc) -> None:
        if exc is not None:
            self._client._read_leftover()
        self._client._connection_lost(exc)

    def pause_writing(self) -> None:
        self._client._write_paused = True
        self._client._resume.clear()

    def resume_writing(self) -> None:
        self._client._write_paused = False
        self._client._resume.set()


class TcpClient:
    """One raw TCP connection to calcd. Create it with :meth:`connect`.

    Args (of :meth:`connect`):
        max_frame_size: largest frame length this client accepts.
        max_message_size: largest (decoded) message this client accepts.
        compress: compress messages at the server's threshold (default True).
        keepalive: ping every half of the server's idle timeout (default True).
        deadline_grace: seconds past a call's deadline to wait for the
            server's answer before failing the call locally (default 0: the
            local timer fires at the deadline itself).
        tls: connect over TLS 1.3 with ALPN calc/1, trusting the system's
            roots unless tls_ca is given (implied by any tls_* option).
        tls_ca: PEM file of the CA certificates to trust instead.
        tls_cert, tls_key: PEM client certificate and key (mutual TLS).
        tls_server_name: name to verify the server's certificate against
            (and to send as SNI); default: the host connected to.
        ssl: an ssl.SSLContext of your own instead of the tls_* files; it
            must offer ALPN calc/1 (checked after the handshake).
        token: sent as "authorization: Bearer <token>" metadata on every
            call; refused (ValueError) without TLS unless the host is
            localhost or a loopback address.
    """

    def __init__(
        self,
        *,
        max_frame_size: int = wire.DEFAULT_MAX_FRAME_SIZE,
        max_message_size: int = wire.DEFAULT_MAX_MESSAGE_SIZE,
        compress: bool = True,
        keepalive: bool = True,
        deadline_grace: float = 0.0,
        token: str | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._max_message_size = max_message_size
        self._compress = compress
        self._keepalive = keepalive
        self._deadline_grace = max(0.0, deadline_grace)
        self._decoder = wire.FrameDecoder(max_frame_size)
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, _Call] = {}
        self._next_id = 1
        self._refs: dict[str, int] = {}
        self.settings: wire.Settings = wire.Settings()
        self._settings_fut: asyncio.Future = self._loop.create_future()
        self.goaway: tuple[int, status_pb2.Status] | None = None
        self._closed = False
        self._close_reason: CalcError | None = None
        self._lost: asyncio.Future = self._loop.create_future()
        self._ended: asyncio.Future = self._loop.create_future()  # done when no new call can start
        self._idle: asyncio.Future | None = None  # done when no call is pending (wait_idle)
        self._written_id = 0  # the highest call id whose REQUEST was handed to the transport
        self._wbuf: list[bytes] = []
        self._flush_scheduled = False
        self._write_paused = False
        self._resume = asyncio.Event()
        self._resume.set()
        self._pings: dict[bytes, asyncio.Future] = {}
        self._ping_counter = itertools.count(1)
        self._keepalive_task: asyncio.Task | None = None
        self.peer: str = ""
        self._auth = bearer(token)
        self._tls = False  # whether the connection must have negotiated ALPN calc/1

    # --- connecting -----------------------------------------------------------------

    @classmethod
    async def connect(cls, host: str, port: int, *, connect_timeout: float = 10.0, tls: bool = False,
                      tls_ca: str | None = None, tls_cert: str | None = None, tls_key: str | None = None,
                      tls_server_name: str | None = None, ssl: _ssl.SSLContext | None = None,
                      token: str | None = None, **options) -> "TcpClient":
        """Open a connection (TLS if asked), send the preface and wait for the server's SETTINGS."""
        tls_opts = TlsOptions(enabled=tls, ca=tls_ca, cert=tls_cert, key=tls_key, server_name=tls_server_name)
        ctx = ssl if ssl is not None else (tcp_ssl_context(tls_opts) if tls_opts.on else None)
        check_token(token, ctx is not None, host)
        client = cls(token=token, **options)
        client.peer = f"{host}:{port}"
        client._tls = ctx is not None
        tls_kw = {} if ctx is None else {"ssl": ctx, "server_hostname": tls_server_name or host.strip("[]"),
                                         "ssl_handshake_timeout": connect_timeout}
        try:
            await asyncio.wait_for(
                client._loop.create_connection(lambda: _Protocol(client), host, port, **tls_kw), connect_timeout
            )
        except (OSError, asyncio.TimeoutError) as e:
            what = "TLS handshake with" if isinstance(e, _ssl.SSLError) else "connect to"
            raise _err(_SC.UNAVAILABLE, f"{what} {host}:{port}: {e!r}", safe_to_retry=True) from None
        try:
            await asyncio.wait_for(asyncio.shield(client._settings_fut), connect_timeout)
        except asyncio.TimeoutError:
            client._abort(_err(_SC.UNAVAILABLE, "no SETTINGS from the server", safe_to_retry=True))
            raise _err(_SC.UNAVAILABLE, f"{host}:{port}: no SETTINGS within {connect_timeout}s") from None
        except BaseException:
            client._abort(_err(_SC.UNAVAILABLE, "connect failed"))
            raise
        return client

    @classmethod
    async def connect_address(cls, address: str, **options) -> "TcpClient":
        """connect("HOST:PORT")."""
        host, _, port = address.rpartition(":")
        return await cls.connect(host.strip("[]"), int(port), **options)

    async def __aenter__(self) -> "TcpClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def usable(self) -> bool:
        """True while new calls can be started (not closed, no GOAWAY)."""
        return not self._closed and self.goaway is None and self._next_id <= wire.MAX_UINT32

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # --- calls ----------------------------------------------------------------------

    async def calculate(self, request: pb.CalculateRequest, *, timeout: float | None = None,
                        metadata: Metadata | None = None) -> pb.CalculateResponse:
        return await self.unary(CALCULATE, request, timeout=timeout, metadata=metadata)

    async def evaluate(self, request: pb.EvaluateRequest, *, timeout: float | None = None,
                       metadata: Metadata | None = None) -> pb.EvaluateResponse:
        return await self.unary(EVALUATE, request, timeout=timeout, metadata=metadata)

    def calculate_stream(self, *, timeout: float | None = None, metadata: Metadata | None = None) -> "TcpStream":
        """Open a CalculateStream call (the REQUEST frame is queued at once)."""
        return self.open_stream(CALCULATE_STREAM, timeout=timeout, metadata=metadata)

    async def unary(self, method: Method | str, request: Message, *, timeout: float | None = None,
                    metadata: Metadata | None = None) -> Message:
        """Call a unary method and return its response message."""
        method = self._method(method)
        if method.streaming:
            raise ValueError(f"{method.name} is a streaming method: use open_stream")
        call = self._start(method, request.SerializeToString(), timeout, metadata)
        fut = call.future
        try:
            await self._drain()
            return await fut
        except asyncio.CancelledError:  # the awaiting task was cancelled (fut is cancelled with it)
            if self._pending.get(call.id) is call:
                self._abandon(call, _err(_SC.CANCELLED, "call cancelled by the client"))
            raise

    def open_stream(self, method: Method | str, *, timeout: float | None = None,
                    metadata: Metadata | None = None) -> "TcpStream":
        """Open a streaming call: a REQUEST with an empty message."""
        method = self._method(method)
        if not method.streaming:
            raise ValueError(f"{method.name} is a unary method: use unary")
        return self._start(method, None, timeout, metadata).stream

    async def ping(self, timeout: float | None = 10.0, payload: bytes | None = None) -> float:
        """Send a PING and wait for its PONG; returns the round trip in seconds."""
        if payload is None:
            payload = struct.pack(">Q", next(self._ping_counter))
        if len(payload) > wire.MAX_PING_PAYLOAD:
            raise ValueError("PING payload over 64 bytes")
        self._check_open()
        fut = self._loop.create_future()
        self._pings[payload] = fut
        start = self._loop.time()
        try:
            self._write(wire.encode_frame(wire.Kind.PING, 0, 0, payload))
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise _err(_SC.DEADLINE_EXCEEDED, "no PONG within the timeout") from None
        finally:
            self._pings.pop(payload, None)
        return self._loop.time() - start

    async def close(self) -> None:
        """Close the connection; calls still pending fail with CANCELLED."""
        if not self._closed:
            self._flush()
            self._fail_all(_err(_SC.CANCELLED, "the client closed the connection"))
            self._closed = True
            self._mark_ended()
            if self._transport is not None:
                self._transport.close()
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        if self._transport is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._lost), 5.0)
            except asyncio.TimeoutError:
                self._transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (e.g. by the server after a GOAWAY)."""
        await asyncio.shield(self._lost)

    async def wait_unusable(self) -> None:
        """Wait until new calls can no longer start (``usable`` turns False): a
        GOAWAY, a lost connection, close, or the call ids running out. Calls
        already accepted may still be answered after it returns."""
        await asyncio.shield(self._ended)

    async def wait_idle(self) -> None:
        """Wait until no call is pending on the connection."""
        while self._pending:
            if self._idle is None or self._idle.done():
                self._idle = self._loop.create_future()
            await asyncio.shield(self._idle)

    def _mark_ended(self) -> None:
        if not self._ended.done():
            self._ended.set_result(None)

    # --- call plumbing --------------------------------------------------------------

    @staticmethod
    def _method(method: Method | str) -> Method:
        if isinstance(method, Method):
            return method
        try:
            return METHODS_BY_FULL_NAME[method]
        except KeyError:
            raise ValueError(f"unknown method {method!r}") from None

    def _check_open(self) -> None:
        if self._closed:
            raise self._close_reason or _err(_SC.UNAVAILABLE, "connection closed")

    def _start(self, method: Method, message: bytes | None, timeout: float | None, metadata) -> _Call:
        if self._closed:  # nothing of this call is sent: safe to retry elsewhere
            reason = self._close_reason or _err(_SC.UNAVAILABLE, "connection closed")
            raise CalcError(reason.code, reason.message, reason.status, safe_to_retry=True, transport="tcp",
                            local=True)
        if self.goaway is not None:
            last_id, reason = self.goaway
            raise _err(_SC.UNAVAILABLE, f"connection is going away (GOAWAY {code_from_number(reason.code).name}: "
                                        f"{reason.message!r}); open a new connection", safe_to_retry=True)
        if self._next_id > wire.MAX_UINT32:
            raise _err(_SC.UNAVAILABLE, "call ids exhausted; open a new connection", safe_to_retry=True)
        md = wire.validate_metadata([*self._auth, *metadata] if self._auth and metadata else
                                    (self._auth or metadata))
        flags = 0
        if message is not None:
            if len(message) > self.settings.max_message_size:
                raise _err(_SC.RESOURCE_EXHAUSTED, f"request message of {len(message)} bytes exceeds the server's "
                                                   f"max message size {self.settings.max_message_size}")
            message, flags = self._encode_message(message)
        ref = self._refs.get(method.name)
        bind = ref is None
        if bind:
            if len(self._refs) >= wire.MAX_METHOD_REFS:
                raise _err(_SC.RESOURCE_EXHAUSTED, "too many method refs on one connection")
            ref = len(self._refs) + 1
        timeout_us = None if timeout is None else max(0, int(timeout * 1_000_000))
        header, hflags = wire.encode_request_header(
            wire.RequestHeader(method_ref=ref, method_name=method.name if bind else None,
                               timeout_us=timeout_us, metadata=md))
        payload = header + (message or b"")
        if wire.HEADER_SIZE + len(payload) > self.settings.max_frame_size:
            raise _err(_SC.RESOURCE_EXHAUSTED, "request frame exceeds the server's max frame size")
        if bind:
            self._refs[method.name] = ref
        call = _Call(self._next_id, method)
        if method.streaming:
            call.stream = TcpStream(self, call)
        else:
            call.future = self._loop.create_future()
        self._next_id += 1
        if self._next_id > wire.MAX_UINT32:
            self._mark_ended()
        self._pending[call.id] = call
        self._write(wire.encode_frame(wire.Kind.REQUEST, flags | hflags, call.id, payload))
        if timeout is not None:
            call.timer = self._loop.call_later(max(0.0, timeout) + self._deadline_grace, self._deadline_expired, call)
        return call

    def _encode_message(self, message: bytes) -> tuple[bytes, int]:
        threshold = self.settings.compress_threshold if self._compress else 0
        return wire.encode_message(message, threshold)

    def _deadline_expired(self, call: _Call) -> None:
        call.timer = None
        if call.id in self._pending:
            self._abandon(call, _err(_SC.DEADLINE_EXCEEDED, "deadline exceeded (client)"))

    def _abandon(self, call: _Call, error: CalcError) -> None:
        """Fail a call locally and tell the server with CANCEL."""
        if self._pending.get(call.id) is call and not self._closed:
            try:
                self._write(wire.encode_frame(wire.Kind.CANCEL, 0, call.id))
            except CalcError:
                pass
        self._finish(call, error=error)

    def _finish(self, call: _Call, *, response: Message | None = None, error: CalcError | None = None) -> None:
        if self._pending.get(call.id) is call:
            del self._pending[call.id]
            if not self._pending and self._idle is not None and not self._idle.done():
                self._idle.set_result(None)
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        if call.future is not None:
            if not call.future.done():
                if error is not None:
                    call.future.set_exception(error)
                else:
                    call.future.set_result(response)
        elif call.stream is not None:
            call.stream._end(error)

    def _fail_all(self, error: CalcError, above: int = 0, unsent_safe: bool = False) -> None:
        """Fail the pending calls with ids above ``above``; with unsent_safe,
        those whose REQUEST never reached the transport are marked safe to
        retry (the server cannot have seen them)."""
        for call in [c for cid, c in self._pending.items() if cid > above]:
            safe = error.safe_to_retry or (unsent_safe and call.id > self._written_id)
            message = error.message + ("; the call was not sent: safe to retry" if safe and not error.safe_to_retry
                                       else "")
            # one exception object per call: each is raised in its own task
            self._finish(call, error=CalcError(error.code, message, error.status if message == error.message
                                               else None, safe_to_retry=safe, transport="tcp", local=True))

    # --- writing --------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self._check_open()
        self._wbuf.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._wbuf:
            return
        data = b"".join(self._wbuf)
        self._wbuf.clear()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
            if not self._transport.is_closing():  # else the write failed: asyncio sent nothing of it
                self._written_id = self._next_id - 1  # every REQUEST so far was in self._wbuf

    async def _drain(self) -> None:
        while self._write_paused and not self._closed:
            await self._resume.wait()

    # --- reading --------------------------------------------------------------------

    def _connection_made(self, transport) -> None:
        self._transport = transport
        if self._tls:
            sslobj = transport.get_extra_info("ssl_object")
            alpn = sslobj.selected_alpn_protocol() if sslobj is not None else None
            if alpn != ALPN:
                self._abort(_err(_SC.UNAVAILABLE, f"{self.peer}: the server did not negotiate ALPN {ALPN!r} "
                                                  f"(got {alpn!r}): not a calc raw TCP TLS endpoint, or the "
                                                  f"ssl context does not offer {ALPN!r}"))
                return
        transport.write(wire.PREFACE)

    def _data_received(self, data: bytes) -> None:
        if self._closed:
            return  # closed by us or after a protocol error: nothing left to deliver
        self._decoder.feed(data)
        try:
            while (frame := self._decoder.next_frame()) is not None:
                self._dispatch(frame)
                if self._closed:
                    return
        except wire.WireError as e:
            self._protocol_error(f"{e.name}: {e}")

    def _protocol_error(self, why: str) -> None:
        log.warning("calc tcp %s: protocol error from the server: %s", self.peer, why)
        self._abort(_err(_SC.INTERNAL, f"protocol error from the server: {why}"))

    def _abort(self, error: CalcError) -> None:
        if not self._closed:
            self._close_reason = error
            self._closed = True
            self._mark_ended()
            self._fail_all(error, unsent_safe=error.code is _SC.UNAVAILABLE)
            self._fail_waiters(error)
        if self._transport is not None:
            self._transport.abort()

    def _fail_waiters(self, error: CalcError) -> None:
        if not self._settings_fut.done():
            self._settings_fut.set_exception(error)
            self._settings_fut.exception()  # mark retrieved
        for fut in self._pings.values():
            if not fut.done():
                fut.set_exception(error)
        self._resume.set()
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()

    def _read_leftover(self) -> None:
        """Read what the server sent before it closed, after a write failed.

        A server that closes right after its GOAWAY and last answers, while
        this client is still sending, has its kernel answer those bytes with
        a reset; the next write fails, and asyncio closes the transport
        without reading what had already arrived: the GOAWAY (which says
        which calls are safe to retry) and the answers to accepted calls.
        The kernel still holds them: read them from the socket (a duplicate
        of it, non-blocking; bounded by the receive buffer) before the
        connection is declared lost. Plain TCP only: under TLS the bytes are
        ciphertext that the ssl layer has already given up on.
        """
        if self._closed or self._tls or self._transport is None:
            return
        sock = self._transport.get_extra_info("socket")
        if sock is None:
            return
        try:
            dup = sock.dup()
        except OSError:
            return
        with dup:
            dup.setblocking(False)
            for _ in range(1024):
                try:
                    data = dup.recv(262144)
                except OSError:  # nothing more (BlockingIOError), or the reset itself
                    return
                if not data:
                    return
                self._data_received(data)
                if self._closed:
                    return

    def _connection_lost(self, exc) -> None:
        why = f"connection closed: {exc!r}" if exc else "connection closed by the server"
        if self.goaway is not None:
            why += f" after GOAWAY {code_from_number(self.goaway[1].code).name} {self.goaway[1].message!r}"
        if not self._closed:
            error = _err(_SC.UNAVAILABLE, why)
            self._close_reason = error
            self._closed = True
            self._mark_ended()
            self._fail_all(error, unsent_safe=True)
            self._fail_waiters(error)
        else:
            self._fail_waiters(self._close_reason or _err(_SC.UNAVAILABLE, why))
        self._wbuf.clear()
        if not self._lost.done():
            self._lost.set_result(None)

    def _dispatch(self, f: wire.Frame) -> None:
        kind = f.kind
        if kind == wire.Kind.RESPONSE or kind == wire.Kind.MESSAGE:
            call = self._pending.get(f.id)
            if call is None:
                return  # raced a local deadline or cancel
            if (kind == wire.Kind.RESPONSE) == call.method.streaming:
                self._abandon(call, _err(_SC.INTERNAL, f"server sent {f.kind_name} on a "
                                                       f"{'streaming' if call.method.streaming else 'unary'} call"))
                return
            try:
                msg = call.method.response_type.FromString(
                    wire.decode_message(f.payload, f.flags, self._max_message_size))
            except wire.MessageTooLarge as e:
                self._abandon(call, _err(_SC.RESOURCE_EXHAUSTED, f"response message too large: {e}"))
                return
            except (wire.CorruptMessage, DecodeError) as e:
                self._abandon(call, _err(_SC.INTERNAL, f"could not decode the response message: {e}"))
                return
            if call.future is not None:
                self._finish(call, response=msg)
            else:
                call.stream._push(msg)
        elif kind == wire.Kind.STATUS:
            call = self._pending.get(f.id)
            if call is None:
                return
            try:
                st = wire.parse_status(f.payload)
            except wire.WireError as e:
                self._finish(call, error=_err(_SC.INTERNAL, f"undecodable STATUS payload: {e}"))
                return
            if st.code == 0:
                if call.method.streaming:
                    self._finish(call)
                else:
                    self._finish(call, error=_err(_SC.INTERNAL, "server ended a unary call with status OK "
                                                                 "but no RESPONSE"))
            else:
                self._finish(call, error=CalcError.from_status(st, transport="tcp"))
        elif kind == wire.Kind.PING:
            if not self._closed:
                self._write(wire.encode_frame(wire.Kind.PONG, 0, 0, f.payload))
        elif kind == wire.Kind.PONG:
            fut = self._pings.pop(f.payload, None)
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif kind == wire.Kind.SETTINGS:
            try:
                self.settings = wire.parse_settings(f.payload)
            except wire.WireError as e:
                self._protocol_error(str(e))
                return
            if not self._settings_fut.done():
                self._settings_fut.set_result(self.settings)
                self._start_keepalive()
        elif kind == wire.Kind.GOAWAY:
            try:
                last_id, reason = wire.parse_goaway(f.payload)
            except wire.WireError as e:
                self._protocol_error(str(e))
                return
            self._on_goaway(last_id, reason)
        else:  # REQUEST, HALF_CLOSE, CANCEL: only clients send these
            self._protocol_error(f"server sent a {f.kind_name} frame")

    def _on_goaway(self, last_id: int, reason: status_pb2.Status) -> None:
        self.goaway = (last_id, reason)
        self._mark_ended()
        code = code_from_number(reason.code)
        log.info("calc tcp %s: GOAWAY last id %d: %s %s", self.peer, last_id, code.name, reason.message)
        if not self._settings_fut.done():
            self._settings_fut.set_exception(_err(
                _SC.UNAVAILABLE, f"connection refused with GOAWAY {code.name}: {reason.message!r}",
                status=None, safe_to_retry=True))
            self._settings_fut.exception()
        self._fail_all(_err(_SC.UNAVAILABLE, f"call not processed: server sent GOAWAY (last accepted id {last_id}, "
                                             f"{code.name} {reason.message!r}); safe to retry", safe_to_retry=True),
                       above=last_id)

    # --- keepalive ------------------------------------------------------------------

    def _start_keepalive(self) -> None:
        idle_ms = self.settings.idle_timeout_millis
        if self._keepalive and idle_ms > 0 and self._keepalive_task is None:
            self._keepalive_task = self._loop.create_task(self._keepalive_loop(idle_ms / 2000.0))

    async def _keepalive_loop(self, interval: float) -> None:
        while not self._closed:
            await asyncio.sleep(interval)
            if self._closed or self.goaway is not None:
                return
            try:
                self._write(wire.encode_frame(wire.Kind.PING, 0, 0, struct.pack(">Q", next(self._ping_counter))))
            except CalcError:
                return


class TcpStream(MessageReader):
    """A streaming call (CalculateStream) on a :class:`TcpClient`.

    ``send()`` messages, ``half_close()`` when done, and ``recv()`` (or
    ``async for``) the server's messages. ``recv()`` returns None once the
    call ended with status OK and raises :class:`CalcError` if it ended with
    another status. The client reads the connection all the time, so
    messages may be sent without reading answers in between.
    """

    def __init__(self, client: TcpClient, call: _Call) -> None:
        self._client = client
        self._call = call
        self._messages: collections.deque = collections.deque()
        self._waiter: asyncio.Future | None = None
        self._done = False
        self._error: CalcError | None = None
        self._half_closed = False
        self._cancel_sent = False

    @property
    def id(self) -> int:
        return self._call.id

    @property
    def done(self) -> bool:
        return self._done

    async def send(self, message: Message) -> None:
        if self._done:
            raise self._error or RuntimeError("send on a stream that already ended")
        if self._half_closed:
            raise RuntimeError("send after half_close")
        data = message.SerializeToString()
        client = self._client
        if len(data) > client.settings.max_message_size:
            raise _err(_SC.RESOURCE_EXHAUSTED, f"message of {len(data)} bytes exceeds the server's max message size")
        payload, flags = client._encode_message(data)
        client._write(wire.encode_frame(wire.Kind.MESSAGE, flags, self._call.id, payload))
        await client._drain()

    async def half_close(self) -> None:
        """Tell the server no more messages follow (HALF_CLOSE)."""
        if self._half_closed or self._done:
            return
        self._half_closed = True
        self._client._write(wire.encode_frame(wire.Kind.HALF_CLOSE, 0, self._call.id))
        await self._client._drain()

    done_writing = half_close  # grpc.aio's name

    def cancel(self) -> bool:
        """Send CANCEL. The call still ends with the server's final STATUS
        (normally CANCELLED), which ``recv()`` reports. Returns False if the
        call had already ended."""
        if self._done:
            return False
        if not self._cancel_sent:
            self._cancel_sent = True
            self._client._write(wire.encode_frame(wire.Kind.CANCEL, 0, self._call.id))
        return True

    async def recv(self) -> Message | None:
        while True:
            if self._messages:
                return self._messages.popleft()
            if self._done:
                if self._error is not None:
                    raise self._error
                return None
            self._waiter = self._client._loop.create_future()
            try:
                await self._waiter
            except asyncio.CancelledError:
                if not self._done:
                    self._client._abandon(self._call, _err(_SC.CANCELLED, "call cancelled by the client"))
                raise
            finally:
                self._waiter = None

    read = recv  # grpc.aio's name (which returns EOF instead of None)

    def _push(self, msg: Message) -> None:
        self._messages.append(msg)
        self._wake()

    def _end(self, error: CalcError | None) -> None:
        if not self._done:
            self._done = True
            self._error = error
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
