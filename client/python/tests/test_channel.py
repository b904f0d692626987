"""TcpChannel against real calcd processes (tests/calcd.py): killed and
restarted, two endpoints, GOAWAY at max connection age and on SIGTERM, DNS
targets. Every loop is bounded in count and in time; the bounds are generous
and never a measure. Under scripts/interop.sh's python+tls pass the same
tests run over mutual TLS with a token (tests/calcd.py)."""
import asyncio
import functools
import logging

import grpc
import pytest

from calc_client import Backoff, CalcError, TcpChannel
from calc_client.gen.calculator.v1 import calculator_pb2 as pb

SC = grpc.StatusCode
State = grpc.ChannelConnectivity
BOUND = 60.0  # no test may take longer than this (no hang)
WAIT = 20.0  # any one wait below: generous, never a measure

# Fast backoff for loopback tests: 50 ms growing to 0.5 s.
FAST = dict(backoff=Backoff(base_delay=0.05, max_delay=0.5), min_connect_timeout=5.0,
            retry_backoff=Backoff(base_delay=0.02, max_delay=0.2))


def run(fn):
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        asyncio.run(asyncio.wait_for(fn(*a, **kw), BOUND))
    return wrapper


def goaway_only(srv):
    """retry_idempotent for the GOAWAY tests: off in plaintext, where the
    GOAWAY alone must say which calls to retry. Over TLS it is on: calcd
    closes a drained connection at once, even with frames from the client
    still unread, so its kernel resets the connection; a client write then
    fails and Python's ssl transport drops the GOAWAY that had arrived (about
    one run in a hundred), failing calls UNAVAILABLE that it would have
    marked not processed. In plaintext TcpClient reads those bytes anyway."""
    return dict(retry_idempotent=bool(srv.tls))


def add(a, b):
    return pb.CalculateRequest(operator=pb.OPERATOR_ADD, lhs=a, rhs=b)


async def until(cond, what, timeout=WAIT):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, f"not reached within {timeout}s: {what}"
        await asyncio.sleep(0.01)


async def call_ok(ch, i, **kw):
    r = await ch.calculate(add(i, 1), timeout=WAIT, **kw)
    assert r.result == i + 1
    return r


class Load:
    """Callers making calls on a channel until told to stop, each at most
    ``limit`` calls. Any exception ends that caller and is raised by stop()."""

    def __init__(self, ch, callers=8, limit=5000, **call_kw):
        self.ch = ch
        self.done = 0
        self.stopping = False
        self.tasks = [asyncio.create_task(self._caller(i, limit, call_kw)) for i in range(callers)]

    async def _caller(self, i, limit, call_kw):
        for n in range(limit):
            if self.stopping:
                return
            await call_ok(self.ch, i * 100_000 + n, **call_kw)
            self.done += 1

    async def reach(self, n, what):
        start = self.done
        await until(lambda: self.done >= start + n or any(t.done() for t in self.tasks), what)
        for t in self.tasks:
            if t.done():
                t.result()  # raises a caller's failure

    async def stop(self):
        self.stopping = True
        await asyncio.gather(*self.tasks)  # raises the first failure


@run
async def test_sigkill_and_restart_recovers_with_no_error_to_callers(calcd):
    srv = calcd("a")
    async with TcpChannel(srv.addr, retry_idempotent=True, wait_for_ready=True, **FAST,
                          **srv.client_options) as ch:
        await ch.wait_ready(WAIT)
        seen = []

        async def watch():
            st = ch.state
            while st is not State.SHUTDOWN:
                await ch.wait_for_state_change(st)
                st = ch.state
                seen.append(st)

        watcher = asyncio.create_task(watch())
        load = Load(ch)
        await load.reach(200, "calls before the kill")
        srv.kill()
        await until(lambda: ch.state is not State.READY, "the channel sees the connection lost")
        srv.start()  # the same port
        assert srv.calls(1) == 0
        await load.reach(500, "calls after the restart")
        await load.stop()  # no caller saw an error
        assert ch.state is State.READY and srv.calls(1) > 0
        assert State.CONNECTING in seen and seen[-1] is State.READY, seen
        watcher.cancel()


@run
async def test_sigkill_fails_fast_then_recovers_by_itself(calcd):
    srv = calcd("a")
    async with TcpChannel(srv.addr, **FAST, **srv.client_options) as ch:
        await ch.wait_ready(WAIT)
        await call_ok(ch, 1)
        srv.kill()
        await until(lambda: ch.state is State.TRANSIENT_FAILURE, "TRANSIENT_FAILURE after the kill")
        # fail fast: no server, no waiting
        with pytest.raises(CalcError) as ei:
            await ch.calculate(add(1, 1), timeout=WAIT)
        assert ei.value.code is SC.UNAVAILABLE and "no server ready" in ei.value.message, ei.value.describe()
        with pytest.raises(CalcError) as ei:
            await ch.wait_ready(WAIT)
        assert ei.value.code is SC.UNAVAILABLE
        # waiting for ready, the call's deadline ends it
        with pytest.raises(CalcError) as ei:
            await ch.calculate(add(1, 1), timeout=0.2, wait_for_ready=True)
        assert ei.value.code is SC.DEADLINE_EXCEEDED, ei.value.describe()

        srv.start()
        for _ in range(20):  # bounded: each wait is one change of state
            if ch.state is State.READY:
                break
            await ch.wait_for_state_change(ch.state, timeout=WAIT)
        assert ch.state is State.READY
        await call_ok(ch, 2)


@pytest.mark.parametrize("form", ["string", "list"])
@pytest.mark.parametrize("balancer", ["round_robin", "power_of_two_choices"])
@run
async def test_two_endpoints_both_get_calls(calcd, form, balancer):
    a, b = calcd("a"), calcd("b")
    target = f"{a.addr},{b.addr}" if form == "string" else [a.addr, b.addr]
    async with TcpChannel(target, balancer=balancer, retry_idempotent=True, **FAST, **a.client_options) as ch:
        await until(lambda: list(ch.endpoints.values()) == [State.READY, State.READY], "both READY")
        assert list(ch.endpoints) == [a.addr, b.addr]
        for i in range(100):
            await call_ok(ch, i)
        await until(lambda: a.calls() + b.calls() == 100, "100 calls logged")
        if balancer == "round_robin":
            assert (a.calls(), b.calls()) == (50, 50)
        else:
            assert a.calls() > 0 and b.calls() > 0, (a.calls(), b.calls())

        # one goes away: the other takes every call, none fails
        a.kill()
        for i in range(50):
            await call_ok(ch, i)
        await until(lambda: ch.endpoints[a.addr] is State.TRANSIENT_FAILURE, "a in TRANSIENT_FAILURE")
        assert ch.state is State.READY
        for i in range(50):
            await call_ok(ch, i)
        await until(lambda: b.calls() >= 100, "b took the calls")


@run
async def test_goaway_at_max_connection_age_fails_no_call(calcd, caplog):
    srv = calcd("a", "--max-connection-age", "150ms")
    caplog.set_level(logging.INFO, logger="calc_client.tcp")
    # neither retry_idempotent (but see goaway_only) nor wait_for_ready: GOAWAY says which calls were not processed
    async with TcpChannel(srv.addr, **goaway_only(srv), **FAST, **srv.client_options) as ch:
        await ch.wait_ready(WAIT)
        load = Load(ch, callers=16)
        await until(lambda: sum("GOAWAY" in r.getMessage() for r in caplog.records) >= 5
                    or any(t.done() for t in load.tasks), "five GOAWAYs")
        await load.reach(100, "calls after them")
        await load.stop()  # no caller saw an error
        assert sum("GOAWAY" in r.getMessage() for r in caplog.records) >= 5


@run
async def test_sigterm_drain_moves_calls_to_the_other_endpoint(calcd):
    a, b = calcd("a"), calcd("b")
    async with TcpChannel([a.addr, b.addr], **goaway_only(a), **FAST, **a.client_options) as ch:
        await until(lambda: list(ch.endpoints.values()) == [State.READY, State.READY], "both READY")
        load = Load(ch, callers=16)
        await load.reach(300, "calls on both")
        assert a.calls() > 0
        assert await asyncio.to_thread(a.terminate) == 0  # drained: GOAWAY, in-flight calls answered, exit 0
        await until(lambda: ch.endpoints[a.addr] is State.TRANSIENT_FAILURE, "a in TRANSIENT_FAILURE")
        before = b.calls()
        await load.reach(300, "calls on b alone")
        await load.stop()  # no call failed
        assert b.calls() > before


@run
async def test_dns_target(calcd):
    srv = calcd("a")
    # localhost resolves to 127.0.0.1 (and perhaps ::1, where nothing listens); TLS verifies "localhost"
    async with TcpChannel(f"dns:///localhost:{srv.port}", **FAST, **srv.client_options) as ch:
        await ch.wait_ready(WAIT)
        assert f"127.0.0.1:{srv.port}" in ch.endpoints
        for i in range(10):
            await call_ok(ch, i)


@run
async def test_dns_target_is_resolved_again_after_a_lost_connection(calcd):
    a = calcd("a")
    try:
        b = calcd("b", host="127.0.0.2", port=a.port)  # the same port on another loopback address
    except RuntimeError as e:
        pytest.fail(f"cannot listen on 127.0.0.2:{a.port} (is 127.0.0.0/8 loopback here?): {e}")
    answer = ["127.0.0.1"]
    lookups = []

    async def lookup(host):
        lookups.append(host)
        return list(answer)

    async with TcpChannel(f"dns:///localhost:{a.port}", lookup_host=lookup, resolve_interval=3600,
                          retry_idempotent=True, wait_for_ready=True, **FAST, **a.client_options) as ch:
        await ch.wait_ready(WAIT)
        assert list(ch.endpoints) == [a.addr] and lookups == ["localhost"]
        for i in range(10):
            await call_ok(ch, i)
        answer[:] = ["127.0.0.2"]  # the name moves; only a lost connection makes the channel ask again
        a.kill()
        for i in range(10):
            await call_ok(ch, i)
        assert list(ch.endpoints) == [b.addr] and len(lookups) >= 2
        await until(lambda: b.calls() >= 10, "b took the calls")
