"""Fixtures: real calcd processes (tests/calcd.py)."""
import pytest

from calcd import Calcd, build


@pytest.fixture(scope="session")
def calcd_binary(tmp_path_factory):
    return build(tmp_path_factory.mktemp("calcd-bin"))


@pytest.fixture
def calcd(calcd_binary, tmp_path):
    """calcd(name, *flags) -> a started Calcd; every one is killed at the end of the test."""
    started: list[Calcd] = []

    def start(name: str = "calcd", *args: str, host: str = "127.0.0.1", port: int = 0) -> Calcd:
        c = Calcd(calcd_binary, tmp_path, name, *args)
        started.append(c)
        return c.start(host, port)

    yield start
    for c in started:
        c.kill()
