"""Exponential backoff with jitter, as gRPC's connection backoff computes it.

The numbers are gRPC's (doc/connection-backoff.md, grpc-go's
``backoff.DefaultConfig``), and so are the names, in Python style:
``base_delay`` 1 s, ``multiplier`` 1.6, ``jitter`` 0.2, ``max_delay`` 120 s.
Delays are in seconds (floats), so loopback tests may use milliseconds::

    Backoff(base_delay=0.01, max_delay=0.1)

The delay before attempt ``retries + 1`` is ``base_delay * multiplier **
retries``, at most ``max_delay``, then spread uniformly by ``± jitter`` of
itself. The Go client computes the same (client/tcpconn/backoff.go).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "DEFAULT_BACKOFF", "DEFAULT_RETRY_BACKOFF", "DEFAULT_MIN_CONNECT_TIMEOUT"]

DEFAULT_MIN_CONNECT_TIMEOUT = 20.0
"""The least time one connection attempt, handshake included, is given
(gRPC's MIN_CONNECT_TIMEOUT), in seconds."""


@dataclass(frozen=True)
class Backoff:
    """A backoff configuration (grpc-go's ``backoff.Config``). Every field
    has gRPC's connection-backoff default; any positive values are accepted."""

    base_delay: float = 1.0  # seconds before the first retry
    multiplier: float = 1.6  # growth per failed attempt (at least 1)
    jitter: float = 0.2  # each delay is spread by ± this fraction of itself (0 to 1)
    max_delay: float = 120.0  # the delay grows no further than this, before jitter

    def __post_init__(self) -> None:
        if not self.base_delay > 0 or not self.max_delay > 0:
            raise ValueError(f"backoff delays must be positive: {self}")
        if not self.multiplier >= 1:
            raise ValueError(f"backoff multiplier must be at least 1: {self}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be within [0, 1]: {self}")

    def delay(self, retries: int, rnd: float | None = None) -> float:
        """The wait, in seconds, before attempt ``retries + 1`` (``retries``
        failures so far). ``rnd`` in [0, 1) picks the point in the jitter's
        spread (0.5 is none); None draws it at random."""
        d = self.base_delay
        while retries > 0 and d < self.max_delay:
            d *= self.multiplier
            retries -= 1
        d = min(d, self.max_delay)
        if rnd is None:
            rnd = random.random()
        return max(d * (1 + self.jitter * (rnd * 2 - 1)), 0.0)


DEFAULT_BACKOFF = Backoff()
"""gRPC's connection backoff: 1 s, x1.6 per failure, ±20%, at most 120 s."""

DEFAULT_RETRY_BACKOFF = Backoff(base_delay=0.1, multiplier=1.6, jitter=0.2, max_delay=1.0)
"""What spaces retries of idempotent calls (``retry_idempotent``), as the Go
client's: 100 ms, x1.6, ±20%, at most 1 s."""
