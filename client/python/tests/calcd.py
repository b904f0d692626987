"""Real calcd processes for the TcpChannel tests (tests/test_channel.py).

calcd is built once per test session (``go build ./server/cmd/calcd`` into a
temporary directory; the environment variable CALCD names a binary to use
instead) and started on 127.0.0.1 (or another loopback address) on port 0 or
a given one; its raw TCP address is read from the "listening" record of its
JSON log. A test can SIGKILL or SIGTERM it and start it again on the same
address. Every process started here is killed when the test ends.

When the environment names a TLS setup (what scripts/interop.sh's python+tls
pass sets: CALC_TLS_SERVER_CERT/KEY, CALC_TLS_CA, CALC_TLS_CERT/KEY and
CALC_TOKEN), calcd is started with TLS 1.3, mutual TLS and a token policy
allowing that token, and :attr:`Calcd.client_options` are the matching
TcpChannel options; otherwise both are plaintext.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
_TLS_ENV = ("CALC_TLS_SERVER_CERT", "CALC_TLS_SERVER_KEY", "CALC_TLS_CA", "CALC_TLS_CERT", "CALC_TLS_KEY",
            "CALC_TOKEN")
START_TIMEOUT = 15.0  # seconds for calcd to log its address: generous, never a measure


def tls_env() -> dict[str, str] | None:
    """The TLS setup the environment names, or None for plaintext."""
    env = {k: os.environ.get(k, "") for k in _TLS_ENV}
    return env if all(env.values()) else None


def build(out_dir: Path) -> Path:
    """The calcd binary: $CALCD, or built from this repository into out_dir."""
    if os.environ.get("CALCD"):
        return Path(os.environ["CALCD"])
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the TcpChannel tests need Go to build calcd (or CALCD=/path/to/calcd)")
    out = out_dir / "calcd"
    subprocess.run([go, "build", "-o", str(out), "./server/cmd/calcd"], cwd=REPO, check=True, timeout=600)
    return out


class Calcd:
    """One calcd process, restartable on the same raw TCP address."""

    def __init__(self, binary: Path, workdir: Path, name: str, *args: str) -> None:
        self.binary = binary
        self.workdir = workdir
        self.name = name
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.logs: list[Path] = []
        self.tls = tls_env()
        self._tls_args: list[str] = []
        if self.tls:
            policy = workdir / f"{name}-policy.json"
            digest = hashlib.sha256(self.tls["CALC_TOKEN"].encode()).hexdigest()
            policy.write_text(json.dumps({"principals": [{"name": "test", "token_sha256": digest, "methods": ["*"]}]}))
            self._tls_args = ["--tls-cert", self.tls["CALC_TLS_SERVER_CERT"], "--tls-key",
                              self.tls["CALC_TLS_SERVER_KEY"], "--tls-client-ca", self.tls["CALC_TLS_CA"],
                              "--auth-tokens", str(policy)]

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def client_options(self) -> dict:
        """The TLS and token options a client of this calcd needs."""
        if not self.tls:
            return {}
        return dict(tls_ca=self.tls["CALC_TLS_CA"], tls_cert=self.tls["CALC_TLS_CERT"],
                    tls_key=self.tls["CALC_TLS_KEY"], token=self.tls["CALC_TOKEN"])

    def start(self, host: str | None = None, port: int | None = None) -> "Calcd":
        """Start calcd on host:port (default: the last ones, or 127.0.0.1:0)
        and wait for its listening record."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if host is not None:
            self.host = host
        if port is not None:
            self.port = port
        log_path = self.workdir / f"{self.name}.{len(self.logs)}.log"
        self.logs.append(log_path)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "--tcp-addr", self.addr, "--grpc-addr", f"{self.host}:0",
                 "--access-log-every", "1", *self._tls_args, *self.args],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        end = time.monotonic() + START_TIMEOUT
        while time.monotonic() < end:
            m = re.search(rb'"msg":"listening","transport":"tcp","addr":"([^"]+)"', log_path.read_bytes())
            if m:
                self.host, _, port_s = m.group(1).decode().rpartition(":")
                self.port = int(port_s)
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"calcd {self.name} did not start on {self.addr}:\n{log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL the process and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM (calcd drains) and return its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def calls(self, run: int | None = None) -> int:
        """Calls the process logged (every one: --access-log-every 1), in
        every run or in run number ``run`` (0 is the first start)."""
        paths = self.logs if run is None else [self.logs[run]]
        return sum(p.read_bytes().count(b'"msg":"call"') for p in paths)
