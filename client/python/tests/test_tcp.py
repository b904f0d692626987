"""TcpClient against the in-process fake server (tests/fake_server.py)."""
import asyncio
import functools
import socket
import struct

import grpc
import pytest
from google.rpc import status_pb2

from calc_client import CalcError, TcpClient, wire
from calc_client.gen.calculator.v1 import calculator_pb2 as pb

from fake_server import FakeServer

SC = grpc.StatusCode


def run(fn):
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        asyncio.run(asyncio.wait_for(fn(*a, **kw), 10))
    return wrapper


def add(a, b):
    return pb.CalculateRequest(operator=pb.OPERATOR_ADD, lhs=a, rhs=b)


async def until(cond, timeout=2.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)


def requests(server):
    return [f for f in server.conn.frames if f.kind == wire.Kind.REQUEST]


@run
async def test_unary_binds_method_ref_once():
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port) as c:
        assert (await c.calculate(add(2, 3))).result == 5
        assert (await c.calculate(add(4, 5))).result == 9
        assert (await c.evaluate(pb.EvaluateRequest(expression="1"))).result == "1"
        reqs = requests(srv)
        assert [f.id for f in reqs] == [1, 2, 3]
        assert [bool(f.flags & wire.Flag.METHOD_NAME) for f in reqs] == [True, False, True]
        assert [srv.conn.headers[i].method_ref for i in (1, 2, 3)] == [1, 1, 2]
        assert srv.conn.headers[1].timeout_us is None


@run
async def test_error_status_with_details():
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port) as c:
        with pytest.raises(CalcError) as ei:
            await c.calculate(pb.CalculateRequest(operator=pb.OPERATOR_DIVIDE, lhs=1, rhs=0))
        e = ei.value
        assert e.code is SC.INVALID_ARGUMENT and e.message == "division by zero: 1 / 0"
        assert e.reason == "DIVISION_BY_ZERO" and e.field_violations() == ["rhs"]
        assert e.metadata == {"offset": "3"} and not e.local and e.transport == "tcp"
        assert (await c.calculate(add(1, 1))).result == 2  # connection kept


@run
async def test_out_of_order_answers_and_many_in_flight():
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port) as c:
        srv.hold = True
        tasks = [asyncio.create_task(c.calculate(add(i, i))) for i in range(1, 201)]
        await until(lambda: len(srv.conn.held) == 200)
        assert c.in_flight == 200
        srv.conn.release(sorted(srv.conn.held, reverse=True))  # answer the last first
        assert [r.result for r in await asyncio.gather(*tasks)] == [2 * i for i in range(1, 201)]
        # every frame arrived whole and in id order
        assert [f.id for f in requests(srv)] == list(range(1, 201))


@run
async def test_deadline_sent_and_enforced_locally():
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port) as c:
        srv.hold = True
        with pytest.raises(CalcError) as ei:
            await c.calculate(add(1, 2), timeout=0.15)
        assert ei.value.code is SC.DEADLINE_EXCEEDED and ei.value.local
        assert srv.conn.headers[1].timeout_us == 150_000
        await until(lambda: any(f.kind == wire.Kind.CANCEL and f.id == 1 for f in srv.conn.frames))
        srv.hold = False
        assert c.in_flight == 0 and (await c.calculate(add(1, 2))).result == 3


@run
async def test_deadline_grace_lets_the_server_answer():
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port, deadline_grace=1.0) as c:
        stream = c.calculate_stream(timeout=0.1)
        with pytest.raises(CalcError) as ei:
            await stream.recv()
        assert ei.value.code is SC.DEADLINE_EXCEEDED and not ei.value.local
        assert ei.value.message == "context deadline exceeded"


@run
async def test_metadata_and_compression():
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port) as c:
        expr = "1 + " * 200 + "1"
        resp = await c.evaluate(pb.EvaluateRequest(expression=expr),
                                metadata=[("authorization", "Bearer t0ken"), ("trace-bin", b"\x00\x01")])
        assert resp.result == expr  # the fake server's answer came back compressed
        f = requests(srv)[0]
        assert f.flags & wire.Flag.COMPRESSED and f.flags & wire.Flag.METADATA
        assert srv.conn.headers[1].metadata == [("authorization", b"Bearer t0ken"), ("trace-bin", b"\x00\x01")]
        await c.evaluate(pb.EvaluateRequest(expression="1 + 1"))
        assert not requests(srv)[1].flags & wire.Flag.COMPRESSED


@run
async def test_server_compress_threshold_is_used():
    async with FakeServer(wire.Settings(compress_threshold=0)) as srv, \
            await TcpClient.connect("127.0.0.1", srv.port) as c:
        await c.evaluate(pb.EvaluateRequest(expression="1 + " * 200 + "1"))
        assert not requests(srv)[0].flags & wire.Flag.COMPRESSED


@run
async def test_stream_and_server_cancel():
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port) as c:
        s = c.calculate_stream()
        for i in range(1, 101):
            await s.send(pb.CalculateStreamRequest(id=i, calculation=add(i, 1)))
        await s.half_close()
        got = [m async for m in s]
        assert [(m.id, m.result) for m in got] == [(i, i + 1) for i in range(1, 101)]
        assert requests(srv)[0].payload.endswith(b"CalculateStream")  # REQUEST with an empty message

        s = c.calculate_stream()
        await s.send(pb.CalculateStreamRequest(id=1, calculation=add(1, 1)))
        assert (await s.recv()).result == 2
        assert s.cancel()
        with pytest.raises(CalcError) as ei:
            await s.recv()
        assert ei.value.code is SC.CANCELLED and not ei.value.local  # the server's STATUS
        assert not s.cancel()


@run
async def test_goaway_fails_calls_above_last_id():
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port) as c:
        srv.hold = True
        tasks = [asyncio.create_task(c.calculate(add(i, 0))) for i in (1, 2, 3)]
        await until(lambda: len(srv.conn.held) == 3)
        srv.conn.goaway(2)
        with pytest.raises(CalcError) as ei:
            await tasks[2]
        assert ei.value.code is SC.UNAVAILABLE and ei.value.safe_to_retry
        with pytest.raises(CalcError) as ei:
            await c.calculate(add(9, 9))
        assert ei.value.code is SC.UNAVAILABLE and ei.value.safe_to_retry and not c.usable
        assert not tasks[0].done() and not tasks[1].done()
        srv.conn.release([1, 2])
        assert [(await t).result for t in tasks[:2]] == [1, 2]
        srv.conn.writer.close()
        await asyncio.wait_for(c.wait_closed(), 2)


@run
async def test_closed_connection_fails_pending_unavailable():
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port) as c:
        srv.hold = True
        task = asyncio.create_task(c.calculate(add(1, 1)))
        await until(lambda: len(srv.conn.held) == 1)
        srv.conn.writer.close()
        with pytest.raises(CalcError) as ei:
            await task
        assert ei.value.code is SC.UNAVAILABLE and not ei.value.safe_to_retry
        with pytest.raises(CalcError):
            await c.calculate(add(1, 1))


@run
async def test_ping_pong_both_ways():
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port) as c:
        assert await c.ping() >= 0
        srv.conn.send(wire.Kind.PING, 0, 0, b"\x00" * 7 + b"\x2a")
        await until(lambda: any(f.kind == wire.Kind.PONG and f.payload == b"\x00" * 7 + b"\x2a"
                                for f in srv.conn.frames))


@run
async def test_keepalive_pings_at_half_the_idle_timeout():
    async with FakeServer(wire.Settings(idle_timeout_millis=100)) as srv, \
            await TcpClient.connect("127.0.0.1", srv.port):
        await until(lambda: len(srv.ping_payloads()) >= 2, timeout=1.0)


@run
async def test_refused_with_goaway():
    async with FakeServer() as srv:
        srv.refuse = status_pb2.Status(code=8, message="too many connections")
        with pytest.raises(CalcError) as ei:
            await TcpClient.connect("127.0.0.1", srv.port)
        assert ei.value.code is SC.UNAVAILABLE and "too many connections" in ei.value.message


@run
async def test_connect_refused():
    async with FakeServer() as srv:
        port = srv.port
    with pytest.raises(CalcError) as ei:
        await TcpClient.connect("127.0.0.1", port)
    assert ei.value.code is SC.UNAVAILABLE


@run
async def test_snappy_bomb_response_fails_only_that_call():
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port) as c:
        srv.hold = True
        task = asyncio.create_task(c.calculate(add(1, 1)))
        await until(lambda: len(srv.conn.held) == 1)
        srv.conn.held[1] = wire.encode_frame(wire.Kind.RESPONSE, wire.Flag.COMPRESSED, 1,
                                             bytes.fromhex("80808080040061"))
        srv.conn.release()
        with pytest.raises(CalcError) as ei:
            await task
        assert ei.value.code is SC.RESOURCE_EXHAUSTED
        srv.hold = False
        assert (await c.calculate(add(1, 1))).result == 2


@run
async def test_task_cancellation_sends_cancel():
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port) as c:
        srv.hold = True
        task = asyncio.create_task(c.calculate(add(1, 1)))
        await until(lambda: len(srv.conn.held) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: any(f.kind == wire.Kind.CANCEL and f.id == 1 for f in srv.conn.frames))
        assert c.in_flight == 0


@run
async def test_protocol_error_from_server_closes():
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port) as c:
        srv.hold = True
        task = asyncio.create_task(c.calculate(add(1, 1)))
        await until(lambda: len(srv.conn.held) == 1)
        srv.conn.writer.write(wire.encode_frame(0x42, 0, 0))
        with pytest.raises(CalcError) as ei:
            await task
        assert ei.value.code is SC.INTERNAL and "UNKNOWN_KIND" in ei.value.message
        assert c.closed


@run
async def test_local_limits():
    async with FakeServer(wire.Settings(max_message_size=100)) as srv, \
            await TcpClient.connect("127.0.0.1", srv.port) as c:
        with pytest.raises(CalcError) as ei:
            await c.evaluate(pb.EvaluateRequest(expression="1" * 200))
        assert ei.value.code is SC.RESOURCE_EXHAUSTED
        with pytest.raises(ValueError):
            await c.calculate(add(1, 1), metadata=[("Upper", "x")])


@run
async def test_goaway_and_answers_read_after_a_reset():
    # The server answers, sends GOAWAY and closes while the client is still
    # sending: its kernel resets the connection, the client's next write
    # fails, and asyncio drops the transport without reading what had
    # arrived. The client reads it anyway: the accepted call gets its answer
    # and the new one is marked safe to retry.
    async with FakeServer() as srv, await TcpClient.connect("127.0.0.1", srv.port) as c:
        srv.hold = True
        first = asyncio.create_task(c.calculate(add(1, 1)))
        await until(lambda: len(srv.conn.held) == 1)
        c._transport.pause_reading()  # the client has not read them yet when it writes again
        srv.conn.goaway(1)
        srv.conn.release()
        sock = srv.conn.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        srv.conn.writer.transport.abort()
        await asyncio.sleep(0.2)  # the reset reaches the client
        with pytest.raises(CalcError) as ei:
            await c.calculate(add(2, 2))
        assert ei.value.code is SC.UNAVAILABLE and ei.value.safe_to_retry, ei.value.describe()
        assert (await first).result == 2
        assert c.goaway is not None and c.goaway[0] == 1
