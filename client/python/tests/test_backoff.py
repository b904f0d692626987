"""Backoff (gRPC's connection backoff numbers) and TcpChannel's targets and
options, no server needed."""
import asyncio

import pytest

from calc_client import Backoff, TcpChannel
from calc_client.backoff import DEFAULT_BACKOFF, DEFAULT_MIN_CONNECT_TIMEOUT, DEFAULT_RETRY_BACKOFF
from calc_client.channel import DEFAULT_MAX_ATTEMPTS, DEFAULT_RESOLVE_INTERVAL, Target, parse_target

# retries -> the delay without jitter, in seconds: 1 s x 1.6 per retry, capped at 120 s
SEQUENCE = [(0, 1.0), (1, 1.6), (2, 2.56), (3, 4.096), (4, 6.5536), (5, 10.48576), (10, 1.6 ** 10), (11, 120.0),
            (50, 120.0)]


def test_defaults_are_grpcs():
    assert DEFAULT_BACKOFF == Backoff() == Backoff(base_delay=1.0, multiplier=1.6, jitter=0.2, max_delay=120.0)
    assert DEFAULT_MIN_CONNECT_TIMEOUT == 20.0
    assert DEFAULT_RETRY_BACKOFF == Backoff(base_delay=0.1, multiplier=1.6, jitter=0.2, max_delay=1.0)
    assert DEFAULT_MAX_ATTEMPTS == 5 and DEFAULT_RESOLVE_INTERVAL == 30.0


@pytest.mark.parametrize("retries,want", SEQUENCE)
def test_delay_sequence(retries, want):
    b = Backoff()
    assert b.delay(retries, 0.5) == pytest.approx(want, rel=1e-12)  # rnd 0.5: no jitter
    assert b.delay(retries, 0.0) == pytest.approx(want * 0.8, rel=1e-12)  # the low bound, -20%
    assert b.delay(retries, 1.0 - 1e-12) == pytest.approx(want * 1.2, rel=1e-9)  # the high bound, +20%
    for _ in range(200):  # drawn at random: always within the bounds
        assert want * 0.8 <= b.delay(retries) <= want * 1.2


def test_delays_in_milliseconds_for_tests():
    b = Backoff(base_delay=0.01, max_delay=0.05, jitter=0.0)
    assert [round(b.delay(r), 6) for r in range(6)] == [0.01, 0.016, 0.0256, 0.04096, 0.05, 0.05]


@pytest.mark.parametrize("kw", [dict(base_delay=0), dict(base_delay=-1), dict(max_delay=0), dict(multiplier=0.5),
                                dict(jitter=-0.1), dict(jitter=1.5), dict(base_delay=float("nan"))])
def test_invalid_backoff(kw):
    with pytest.raises(ValueError):
        Backoff(**kw)


@pytest.mark.parametrize("target,want", [
    ("127.0.0.1:4000", Target(static=(("127.0.0.1", 4000),))),
    ("a:1, b:2,c:3", Target(static=(("a", 1), ("b", 2), ("c", 3)))),
    (["a:1", "[::1]:2"], Target(static=(("a", 1), ("::1", 2)))),
    ("dns:///calc.internal:4000", Target(host="calc.internal", port=4000)),
    ("dns:///[::1]:4000", Target(host="::1", port=4000)),
])
def test_parse_target(target, want):
    assert parse_target(target) == want


@pytest.mark.parametrize("target", ["", "calc", "calc:", ":4000", "calc:http", "calc:70000", "::1:4000",
                                    "a:1,", "dns:///calc", "dns://calc:4000", "http://calc:4000", [], [4000]])
def test_bad_target(target):
    with pytest.raises(ValueError):
        parse_target(target)


def test_bad_options_and_plaintext_token_refused_before_connecting():
    async def main():
        for kw in (dict(balancer="random"), dict(max_attempts=0), dict(min_connect_timeout=0),
                   dict(resolve_interval=-1)):
            with pytest.raises(ValueError):
                TcpChannel("127.0.0.1:4000", **kw)
        for target in ("192.0.2.1:4000", "127.0.0.1:4000,192.0.2.1:4000", "dns:///calc.example.com:4000"):
            with pytest.raises(ValueError, match="plaintext"):
                TcpChannel(target, token="t")
        async with TcpChannel("dns:///localhost:4000", token="t", backoff=Backoff(base_delay=10)):
            pass  # loopback: allowed
        async with TcpChannel("192.0.2.1:4000", token="t", tls=True, backoff=Backoff(base_delay=10)):
            pass  # TLS: allowed

    asyncio.run(asyncio.wait_for(main(), 10))


def test_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        TcpChannel("127.0.0.1:4000")
