"""A small in-process raw TCP server for the client's unit tests.

It speaks PROTOCOL.md from the server side with calc_client.wire, records
every frame it receives, and lets a test hold calls, answer them out of
order, send GOAWAY, PING, bad frames, or close the connection. It is NOT a
reference implementation; calcd is. It listens on 127.0.0.1, port 0.
"""
from __future__ import annotations

import asyncio
import struct

from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from calc_client import wire
from calc_client.gen.calculator.v1 import calculator_pb2 as pb
from calc_client.service import METHODS_BY_FULL_NAME


def status(code: int, message: str, field: str | None = None, reason: str | None = None) -> status_pb2.Status:
    st = status_pb2.Status(code=code, message=message)
    if field:
        d = any_pb2.Any()
        d.Pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=field, description=message, reason=reason or "")]))
        st.details.append(d)
    if reason:
        d = any_pb2.Any()
        d.Pack(error_details_pb2.ErrorInfo(reason=reason, domain="calculator.v1", metadata={"offset": "3"}))
        st.details.append(d)
    return st


def calculate(req: pb.CalculateRequest) -> tuple[int | None, status_pb2.Status | None]:
    a, b = req.lhs, req.rhs
    if req.operator == pb.OPERATOR_ADD:
        return a + b, None
    if req.operator == pb.OPERATOR_MULTIPLY:
        return a * b, None
    if req.operator == pb.OPERATOR_DIVIDE:
        if b == 0:
            return None, status(3, f"division by zero: {a} / 0", "rhs", "DIVISION_BY_ZERO")
        return int(a / b), None
    return None, status(3, "operator must be one of ...", "operator", "UNKNOWN_OPERATOR")


class Conn:
    def __init__(self, server: "FakeServer", reader, writer) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.frames: list[wire.Frame] = []
        self.headers: dict[int, wire.RequestHeader] = {}
        self.refs: dict[int, str] = {}
        self.streams: dict[int, str] = {}
        self.held: dict[int, bytes] = {}  # call id -> encoded answer frame, written on release()
        self.deadlines: dict[int, asyncio.TimerHandle] = {}

    def send(self, kind: int, flags: int, call_id: int, payload: bytes = b"") -> None:
        self.writer.write(wire.encode_frame(kind, flags, call_id, payload))

    def answer(self, call_id: int, data: bytes) -> None:
        t = self.deadlines.pop(call_id, None)
        if t:
            t.cancel()
        if self.server.hold and call_id not in self.streams:
            self.held[call_id] = data
        else:
            self.writer.write(data)

    def release(self, ids=None) -> None:
        for cid in list(ids if ids is not None else sorted(self.held)):
            self.writer.write(self.held.pop(cid))

    def status_frame(self, call_id: int, st: status_pb2.Status | None) -> bytes:
        return wire.encode_frame(wire.Kind.STATUS, 0, call_id, wire.encode_status(st))

    def message_frame(self, kind: int, call_id: int, msg) -> bytes:
        payload, flags = wire.encode_message(msg.SerializeToString(), 256)
        return wire.encode_frame(kind, flags, call_id, payload)

    async def run(self) -> None:
        try:
            preface = await self.reader.readexactly(5)
            if wire.read_preface(preface) != 1:
                return
            self.send(wire.Kind.SETTINGS, 0, 0, wire.encode_settings(self.server.settings))
            dec = wire.FrameDecoder()
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return
                dec.feed(data)
                while (f := dec.next_frame()) is not None:
                    self.frames.append(f)
                    self.handle(f)
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.writer.close()

    def handle(self, f: wire.Frame) -> None:
        if f.kind == wire.Kind.PING:
            self.send(wire.Kind.PONG, 0, 0, f.payload)
        elif f.kind == wire.Kind.REQUEST:
            h, msg = wire.parse_request_header(f.flags, f.payload)
            self.headers[f.id] = h
            if self.server.goaway_calls:  # refuse it: GOAWAY below its id, then close
                self.goaway(f.id - 1, message="refusing every call")
                self.writer.close()
                return
            if h.method_name:
                self.refs[h.method_ref] = h.method_name
            name = self.refs.get(h.method_ref)
            method = METHODS_BY_FULL_NAME.get(name)
            if method is None:
                self.answer(f.id, self.status_frame(f.id, status(12, f"unknown method {name}")))
                return
            if h.timeout_us is not None:
                self.deadlines[f.id] = asyncio.get_running_loop().call_later(
                    h.timeout_us / 1e6, self.expire, f.id)
            if method.streaming:
                self.streams[f.id] = name
                return
            req = method.request_type.FromString(wire.decode_message(msg, f.flags))
            if name.endswith("/Calculate"):
                result, st = calculate(req)
                data = (self.status_frame(f.id, st) if st else
                        self.message_frame(wire.Kind.RESPONSE, f.id, pb.CalculateResponse(result=result)))
            else:  # Evaluate: echo the expression, to test compression both ways
                data = self.message_frame(wire.Kind.RESPONSE, f.id,
                                          pb.EvaluateResponse(result=req.expression, exact=True))
            self.answer(f.id, data)
        elif f.kind == wire.Kind.MESSAGE and f.id in self.streams:
            req = pb.CalculateStreamRequest.FromString(wire.decode_message(f.payload, f.flags))
            result, st = calculate(req.calculation)
            resp = pb.CalculateStreamResponse(id=req.id)
            if st:
                resp.error.code, resp.error.message = st.code, st.message
            else:
                resp.result = result
            self.writer.write(self.message_frame(wire.Kind.MESSAGE, f.id, resp))
        elif f.kind == wire.Kind.HALF_CLOSE and f.id in self.streams:
            del self.streams[f.id]
            self.answer(f.id, self.status_frame(f.id, None))
        elif f.kind == wire.Kind.CANCEL:
            if f.id in self.streams:
                del self.streams[f.id]
                self.answer(f.id, self.status_frame(f.id, status(1, "context canceled")))
            elif f.id in self.held:
                self.held[f.id] = self.status_frame(f.id, status(1, "context canceled"))

    def expire(self, call_id: int) -> None:
        self.deadlines.pop(call_id, None)
        self.streams.pop(call_id, None)
        self.held.pop(call_id, None)
        self.writer.write(self.status_frame(call_id, status(4, "context deadline exceeded")))

    def goaway(self, last_id: int, code: int = 0, message: str = "server shutting down") -> None:
        self.send(wire.Kind.GOAWAY, 0, 0, wire.encode_goaway(last_id, status_pb2.Status(code=code, message=message)))


class FakeServer:
    def __init__(self, settings: wire.Settings | None = None) -> None:
        self.settings = settings or wire.Settings()
        self.hold = False
        self.conns: list[Conn] = []
        self._server: asyncio.AbstractServer | None = None
        self.port = 0
        self.refuse: status_pb2.Status | None = None
        self.goaway_calls = False  # answer each REQUEST with a GOAWAY that refuses it, and close

    def requests(self) -> int:
        """REQUEST frames received, on every connection."""
        return sum(1 for c in self.conns for f in c.frames if f.kind == wire.Kind.REQUEST)

    async def __aenter__(self) -> "FakeServer":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        for c in self.conns:
            c.writer.close()
        self._server.close()
        await self._server.wait_closed()

    async def _accept(self, reader, writer) -> None:
        if self.refuse is not None:
            await reader.readexactly(5)
            writer.write(wire.encode_frame(wire.Kind.GOAWAY, 0, 0, wire.encode_goaway(0, self.refuse)))
            await writer.drain()
            writer.close()
            return
        conn = Conn(self, reader, writer)
        self.conns.append(conn)
        await conn.run()

    @property
    def conn(self) -> Conn:
        return self.conns[-1]

    def ping_payloads(self) -> list[bytes]:
        return [f.payload for f in self.conn.frames if f.kind == wire.Kind.PING]


def u64(n: int) -> bytes:
    return struct.pack(">Q", n)
