"""asyncio gRPC client for calculator.v1.CalculatorService (grpcio's grpc.aio).

A thin layer over the generated stub that gives the same API as
:class:`calc_client.tcp.TcpClient` and raises the same
:class:`calc_client.errors.CalcError` (with the google.rpc.Status decoded
from ``grpc-status-details-bin``)::

    async with GrpcClient("127.0.0.1:50051") as client:
        resp = await client.calculate(CalculateRequest(operator=OPERATOR_ADD, lhs=2, rhs=3), timeout=1.0)

The generated stub is there as ``client.stub`` for anything else, and the
synchronous stub works as usual with ``grpc.insecure_channel``.

TLS and tokens, with the Go client's option names: ``tls=True`` (system
roots), ``tls_ca``, ``tls_cert`` + ``tls_key`` (mutual TLS) and
``tls_server_name`` make a ``grpc.ssl_channel_credentials`` channel;
``token`` adds ``authorization: Bearer <token>`` metadata to every call and
is refused without TLS unless the target is localhost or a loopback address.
"""
from __future__ import annotations

import asyncio
import time
from typing import Iterable, Sequence

import grpc
from google.protobuf.message import Message

from .errors import CalcError
from .security import TlsOptions, bearer, check_token
from .gen.calculator.v1 import calculator_pb2 as pb
from .gen.calculator.v1.calculator_pb2_grpc import CalculatorServiceStub
from .service import CALCULATE_STREAM, Method
from .stream import MessageReader

__all__ = ["GrpcClient", "GrpcStream"]

Metadata = Iterable[tuple[str, "str | bytes"]]


def _md(metadata: Metadata | None, auth: list | None = None):
    md = (*(auth or ()), *(metadata or ()))
    return md or None


def _host(target: str) -> str:
    """The host of a HOST:PORT target ("" if it has another shape, e.g. a dns:/// or unix: URI)."""
    if "/" in target or target.startswith("unix:"):
        return ""
    host, sep, port = target.rpartition(":")
    return host.strip("[]") if sep and port.isdigit() else target


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _to_calc_error(err, deadline: float | None) -> CalcError:
    """CalcError from a gRPC error. Like grpc-go's client (handleRSTStream), a
    CANCELLED that arrives once the call's own deadline has passed is reported
    as DEADLINE_EXCEEDED: the server resets a stream with RST_STREAM(CANCEL)
    when its copy of the deadline fires, which can beat the client's timer."""
    calc = CalcError.from_grpc(err)
    if calc.code is grpc.StatusCode.CANCELLED and deadline is not None and time.monotonic() >= deadline:
        return CalcError(grpc.StatusCode.DEADLINE_EXCEEDED,
                         f"deadline exceeded (server reset the stream: {calc.message})", transport="grpc")
    return calc


class GrpcClient:
    """One gRPC channel (one HTTP/2 connection, calls multiplexed on it)."""

    def __init__(self, target: str, *, options: Sequence[tuple[str, object]] | None = None,
                 compression: grpc.Compression | None = None, channel: grpc.aio.Channel | None = None,
                 tls: bool = False, tls_ca: str | None = None, tls_cert: str | None = None,
                 tls_key: str | None = None, tls_server_name: str | None = None,
                 credentials: grpc.ChannelCredentials | None = None, token: str | None = None) -> None:
        """A channel to target (HOST:PORT); plaintext unless a TLS option or credentials are given.

        tls, tls_ca, tls_cert/tls_key and tls_server_name are as for TcpClient.connect (the channel's
        credentials are grpc.ssl_channel_credentials; ALPN h2 is grpc's own); credentials replaces them
        with channel credentials of your own. token is sent as "authorization: Bearer <token>" metadata
        on every call, and refused (ValueError) over plaintext to a target that is not loopback. A
        channel given as channel is used as is (only token applies, checked as if it were plaintext
        unless a TLS option says otherwise).
        """
        self.target = target
        opts = TlsOptions(enabled=tls, ca=tls_ca, cert=tls_cert, key=tls_key, server_name=tls_server_name)
        secure = credentials is not None or opts.on
        check_token(token, secure, _host(target))
        self._auth = bearer(token)
        if channel is None:
            options = list(options or ())
            if opts.on and credentials is None:
                ca, key, cert = opts.read()
                credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                                           certificate_chain=cert)
            if tls_server_name:
                options.append(("grpc.ssl_target_name_override", tls_server_name))
            if credentials is not None:
                channel = grpc.aio.secure_channel(target, credentials, options=options, compression=compression)
            else:
                channel = grpc.aio.insecure_channel(target, options=options, compression=compression)
        self.channel = channel
        self.stub = CalculatorServiceStub(self.channel)

    async def __aenter__(self) -> "GrpcClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the channel is connected (raises CalcError UNAVAILABLE on timeout)."""
        try:
            await asyncio.wait_for(self.channel.channel_ready(), timeout)
        except asyncio.TimeoutError:
            raise CalcError(grpc.StatusCode.UNAVAILABLE, f"{self.target}: not ready within {timeout}s",
                            transport="grpc") from None

    async def calculate(self, request: pb.CalculateRequest, *, timeout: float | None = None,
                        metadata: Metadata | None = None) -> pb.CalculateResponse:
        return await self._unary(self.stub.Calculate, request, timeout, metadata)

    async def evaluate(self, request: pb.EvaluateRequest, *, timeout: float | None = None,
                       metadata: Metadata | None = None) -> pb.EvaluateResponse:
        return await self._unary(self.stub.Evaluate, request, timeout, metadata)

    def calculate_stream(self, *, timeout: float | None = None, metadata: Metadata | None = None) -> "GrpcStream":
        return self.open_stream(CALCULATE_STREAM, timeout=timeout, metadata=metadata)

    async def unary(self, method: Method | str, request: Message, *, timeout: float | None = None,
                    metadata: Metadata | None = None) -> Message:
        """Call any unary method by its Method (or full name), like TcpClient.unary."""
        return await self._unary(self._rpc(method), request, timeout, metadata)

    def open_stream(self, method: Method | str, *, timeout: float | None = None,
                    metadata: Metadata | None = None) -> "GrpcStream":
        return GrpcStream(self._rpc(method)(timeout=timeout, metadata=_md(metadata, self._auth)),
                          _deadline(timeout))

    def _rpc(self, method: Method | str):
        name = method.name if isinstance(method, Method) else method
        return getattr(self.stub, name.rsplit("/", 1)[-1])

    async def _unary(self, rpc, request: Message, timeout, metadata) -> Message:
        deadline = _deadline(timeout)
        try:
            return await rpc(request, timeout=timeout, metadata=_md(metadata, self._auth))
        except grpc.aio.AioRpcError as e:
            raise _to_calc_error(e, deadline) from None


class GrpcStream(MessageReader):
    """A streaming call with the same methods as :class:`calc_client.tcp.TcpStream`."""

    def __init__(self, call: grpc.aio.StreamStreamCall, deadline: float | None = None) -> None:
        self.call = call
        self._deadline = deadline
        self._cancelled = False

    async def send(self, message: Message) -> None:
        try:
            await self.call.write(message)
        except grpc.aio.AioRpcError as e:
            raise _to_calc_error(e, self._deadline) from None
        except asyncio.InvalidStateError:
            await self._raise_final()
            raise

    async def half_close(self) -> None:
        try:
            await self.call.done_writing()
        except grpc.aio.AioRpcError as e:
            raise _to_calc_error(e, self._deadline) from None

    done_writing = half_close

    def cancel(self) -> bool:
        """Cancel the call (locally, as gRPC does: the call ends CANCELLED at once)."""
        self._cancelled = True
        return self.call.cancel()

    async def recv(self) -> Message | None:
        """The next message; None once the call ended OK; raises CalcError otherwise."""
        try:
            msg = await self.call.read()
        except grpc.aio.AioRpcError as e:
            raise _to_calc_error(e, self._deadline) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.call.cancelled() and (task is None or task.cancelling() == 0):
                raise CalcError(grpc.StatusCode.CANCELLED, "call cancelled by the client",
                                transport="grpc") from None
            raise
        if msg is grpc.aio.EOF:
            await self._raise_final()
            return None
        return msg

    read = recv

    async def _raise_final(self) -> None:
        code = await self.call.code()
        if code is grpc.StatusCode.OK:
            return
        if code is grpc.StatusCode.CANCELLED and self._cancelled:
            raise CalcError(code, "call cancelled by the client", transport="grpc")
        raise _to_calc_error(_Finished(code, await self.call.details(), await self.call.trailing_metadata()),
                             self._deadline)


class _Finished:
    """A finished call's status in the shape CalcError.from_grpc reads."""

    def __init__(self, code, details, trailing_metadata) -> None:
        self._code, self._details, self._md = code, details, trailing_metadata

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._md
