"""TcpChannel's retry rules, made deterministic with the in-process fake
server (tests/fake_server.py): which failures are retried, where, and how
many times. tests/test_channel.py runs the same channel against calcd."""
import asyncio
import functools

import grpc
import pytest

from calc_client import Backoff, CalcError, TcpChannel, TcpClient, wire
from calc_client.gen.calculator.v1 import calculator_pb2 as pb
from calc_client.service import CALCULATE

from fake_server import FakeServer

SC = grpc.StatusCode
State = grpc.ChannelConnectivity
FAST = dict(backoff=Backoff(base_delay=0.02, max_delay=0.2), min_connect_timeout=5.0,
            retry_backoff=Backoff(base_delay=0.01, max_delay=0.05))


def run(fn):
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        asyncio.run(asyncio.wait_for(fn(*a, **kw), 20))
    return wrapper


def add(a, b):
    return pb.CalculateRequest(operator=pb.OPERATOR_ADD, lhs=a, rhs=b)


async def until(cond, timeout=5.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)


def held(srv):
    return sum(len(c.held) for c in srv.conns)


@run
async def test_call_refused_by_goaway_is_retried_on_the_other_endpoint():
    async with FakeServer() as a, FakeServer() as b:
        a.hold = True
        async with TcpChannel(f"127.0.0.1:{a.port},127.0.0.1:{b.port}", **FAST) as ch:
            await until(lambda: list(ch.endpoints.values()) == [State.READY, State.READY])
            task = asyncio.create_task(ch.calculate(add(2, 3), timeout=5))  # round robin: a first
            await until(lambda: held(a) == 1)
            a.conn.goaway(0)  # "I accepted nothing": call 1 was not processed
            assert (await task).result == 5
            assert b.requests() == 1


@run
async def test_refused_calls_are_retried_at_most_max_attempts():
    async with FakeServer() as srv:
        srv.goaway_calls = True
        async with TcpChannel(f"127.0.0.1:{srv.port}", max_attempts=3, **FAST) as ch:
            with pytest.raises(CalcError) as ei:
                await ch.calculate(add(1, 1), timeout=5)
            assert ei.value.code is SC.UNAVAILABLE and ei.value.safe_to_retry, ei.value.describe()
            assert srv.requests() == 3 and len(srv.conns) == 3  # each GOAWAY: a new connection


@pytest.mark.parametrize("idempotent", [False, True])
@run
async def test_call_lost_with_its_connection(idempotent):
    async with FakeServer() as srv:
        srv.hold = True
        async with TcpChannel(f"127.0.0.1:{srv.port}", retry_idempotent=idempotent, **FAST) as ch:
            await ch.wait_ready(5)
            task = asyncio.create_task(ch.calculate(add(2, 3), timeout=5))
            await until(lambda: held(srv) == 1)
            srv.hold = False
            srv.conn.writer.close()  # the server may have processed it: only retry_idempotent retries
            if idempotent:
                assert (await task).result == 5
                assert srv.requests() == 2 and len(srv.conns) == 2
            else:
                with pytest.raises(CalcError) as ei:
                    await task
                assert ei.value.code is SC.UNAVAILABLE and not ei.value.safe_to_retry, ei.value.describe()
                assert srv.requests() == 1
            await until(lambda: ch.state is State.READY)  # reconnected by itself
            assert (await ch.calculate(add(1, 1), timeout=5)).result == 2


@run
async def test_server_errors_are_not_retried():
    async with FakeServer() as srv:
        async with TcpChannel(f"127.0.0.1:{srv.port}", retry_idempotent=True, **FAST) as ch:
            with pytest.raises(CalcError) as ei:
                await ch.calculate(pb.CalculateRequest(operator=pb.OPERATOR_DIVIDE, lhs=1, rhs=0), timeout=5)
            assert ei.value.code is SC.INVALID_ARGUMENT and ei.value.field_violations() == ["rhs"]
            assert srv.requests() == 1


@run
async def test_deadline_bounds_the_retries():
    async with FakeServer() as srv:
        srv.hold = True
        async with TcpChannel(f"127.0.0.1:{srv.port}", retry_idempotent=True, max_attempts=100,
                              backoff=Backoff(base_delay=0.02, max_delay=0.2), min_connect_timeout=5.0,
                              retry_backoff=Backoff(base_delay=0.3, jitter=0.0)) as ch:
            await ch.wait_ready(5)
            task = asyncio.create_task(ch.calculate(add(2, 3), timeout=0.2))
            await until(lambda: held(srv) == 1)
            srv.conn.writer.close()  # the retry would wait 0.3 s, past the 0.2 s deadline: not made
            with pytest.raises(CalcError) as ei:
                await task
            assert ei.value.code is SC.UNAVAILABLE and srv.requests() == 1


@run
async def test_stream_on_a_channel_and_not_retried():
    async with FakeServer() as srv:
        async with TcpChannel(f"127.0.0.1:{srv.port}", **FAST) as ch:
            s = await ch.calculate_stream(timeout=5)
            await s.send(pb.CalculateStreamRequest(id=1, calculation=add(6, 7)))
            await s.half_close()
            assert [m.result async for m in s] == [13]

            srv.hold = True  # a stream refused by GOAWAY is the caller's to open again
            s = await ch.calculate_stream(timeout=5)
            await until(lambda: any(f.kind == wire.Kind.REQUEST and f.id == 2 for f in srv.conn.frames))
            srv.conn.goaway(1)
            with pytest.raises(CalcError) as ei:
                await s.recv()
            assert ei.value.code is SC.UNAVAILABLE and ei.value.safe_to_retry


@run
async def test_no_server():
    async with FakeServer() as srv:
        port = srv.port  # closed: connections are refused
    async with TcpChannel(f"127.0.0.1:{port}", **FAST) as ch:
        with pytest.raises(CalcError) as ei:
            await ch.wait_ready(5)
        assert ei.value.code is SC.UNAVAILABLE and "connect to" in ei.value.message
        assert ch.state is State.TRANSIENT_FAILURE and ch.last_error.code is SC.UNAVAILABLE
        with pytest.raises(CalcError) as ei:
            await ch.calculate(add(1, 1), timeout=5)
        assert ei.value.code is SC.UNAVAILABLE and "no server ready" in ei.value.message
        with pytest.raises(CalcError) as ei:
            await ch.calculate(add(1, 1), timeout=0.1, wait_for_ready=True)
        assert ei.value.code is SC.DEADLINE_EXCEEDED
        assert not await ch.wait_for_state_change(State.TRANSIENT_FAILURE, timeout=0.1)


@run
async def test_dns_resolution_failure():
    async def lookup(host):
        raise OSError(f"no such host {host}")

    async with TcpChannel("dns:///calc.invalid:4000", lookup_host=lookup, **FAST) as ch:
        with pytest.raises(CalcError) as ei:
            await ch.wait_ready(5)
        assert ei.value.code is SC.UNAVAILABLE and "resolving calc.invalid" in ei.value.message
        assert ch.endpoints == {}


@run
async def test_close_cancels_calls_and_shuts_down():
    async with FakeServer() as srv:
        srv.hold = True
        ch = TcpChannel(f"127.0.0.1:{srv.port}", **FAST)
        await ch.wait_ready(5)
        task = asyncio.create_task(ch.calculate(add(1, 1), timeout=5))
        await until(lambda: held(srv) == 1)
        await ch.close()
        with pytest.raises(CalcError) as ei:
            await task
        assert ei.value.code is SC.CANCELLED
        assert ch.state is State.SHUTDOWN and ch.closed
        with pytest.raises(CalcError) as ei:
            await ch.calculate(add(1, 1))
        assert ei.value.code is SC.CANCELLED
        with pytest.raises(CalcError) as ei:
            await ch.wait_ready()
        assert ei.value.code is SC.CANCELLED


@run
async def test_a_call_never_sent_is_safe_to_retry():
    # A REQUEST still queued when the connection is lost never reached the
    # server; one started after the loss is not sent at all.
    async with FakeServer() as srv:
        c = await TcpClient.connect("127.0.0.1", srv.port)
        call = c._start(CALCULATE, add(1, 1).SerializeToString(), None, None)  # queued, not yet flushed
        c._connection_lost(ConnectionResetError())
        with pytest.raises(CalcError) as ei:
            await call.future
        assert ei.value.code is SC.UNAVAILABLE and ei.value.safe_to_retry and "not sent" in ei.value.message
        with pytest.raises(CalcError) as ei:
            await c.calculate(add(1, 1))
        assert ei.value.code is SC.UNAVAILABLE and ei.value.safe_to_retry
        assert not c.usable
        await asyncio.wait_for(c.wait_unusable(), 1)
        await c.close()
