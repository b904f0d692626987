"""Conformance runner: every case of testdata/conformance/cases.json over gRPC
and over raw TCP, and every vector of testdata/wire/vectors.json through the
frame decoder.

    python -m calc_client.conformance --grpc 127.0.0.1:50051 --tcp 127.0.0.1:4000

Prints one ``FAIL <case> [<transport>]: <why>`` line per failure, then one
final line ``N passed, N failed``; exits 1 if anything failed (2 for bad
arguments or unreadable files).

Each transport uses ONE connection for all its cases (one gRPC channel, one
raw TCP connection; the TCP client reconnects only if a case left the
connection unusable). Over raw TCP the client's local deadline timer is given
a grace period, so a DEADLINE_EXCEEDED must come from the server's STATUS,
and a cancelled stream's CANCELLED is the server's answer to the CANCEL frame.

With --tls (or any of --tls-ca, --tls-cert/--tls-key, --tls-server-name) both
transports connect over TLS (raw TCP: TLS 1.3, ALPN calc/1); --token, or the
environment variable CALC_TOKEN (which, unlike an argument, ps cannot show),
is sent as "authorization: Bearer <token>" on every call.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import grpc
from google.protobuf import json_format, text_format

from .errors import CalcError
from .grpc_client import GrpcClient
from .service import METHODS
from .tcp import TcpClient
from .gen.calculator.v1 import calculator_pb2 as pb
from .vectors import check_vector

CASES_PATH = "testdata/conformance/cases.json"
VECTORS_PATH = "testdata/wire/vectors.json"
_ERROR_KEYS = {"code", "reason", "field", "offset", "message"}


class CaseFailed(Exception):
    """A case's expectation was not met; the message says why."""


def _one_line(m) -> str:
    return "{" + text_format.MessageToString(m, as_one_line=True) + "}"


def _find(rel: str) -> str | None:
    starts = [Path.cwd(), Path(__file__).resolve().parent]
    for start in starts:
        for d in [start, *start.parents]:
            if (d / rel).is_file():
                return str(d / rel)
    return None


# --- expectations ----------------------------------------------------------------


def check_error(err: CalcError, want: dict) -> None:
    """Compare a CalcError with a case's "error" object (code, reason, field, offset, message)."""
    unknown = set(want) - _ERROR_KEYS
    if unknown:
        raise CaseFailed(f"case has error keys this runner does not know: {sorted(unknown)}")
    problems = []
    if err.code.name != want["code"]:
        problems.append(f"code {err.code.name}, want {want['code']}")
    if err.status.code != err.code.value[0] or err.status.message != err.message:
        problems.append(f"google.rpc.Status ({err.status.code}, {err.status.message!r}) disagrees with the "
                        f"call's status ({err.code.name}, {err.message!r})")
    if "message" in want and err.message != want["message"]:
        problems.append(f"message {err.message!r}, want {want['message']!r}")
    if "reason" in want and err.reason != want["reason"]:
        problems.append(f"ErrorInfo reason {err.reason!r}, want {want['reason']!r}")
    fields = err.field_violations()
    if "field" in want:
        if want["field"] not in fields:
            problems.append(f"BadRequest field violations {fields}, want {want['field']!r}")
    elif fields:
        problems.append(f"unexpected BadRequest field violations {fields}")
    if "offset" in want and err.metadata.get("offset") != str(want["offset"]):
        problems.append(f"ErrorInfo metadata offset {err.metadata.get('offset')!r}, want {str(want['offset'])!r}")
    if problems:
        raise CaseFailed("; ".join(problems) + f" [got {err.describe()}]")


def expect_error(want: dict, what: str) -> CaseFailed:
    return CaseFailed(f"{what}; want error {want.get('code')}")


# --- case kinds ------------------------------------------------------------------


class Runner:
    def __init__(self, transport: str, client_for: Callable, *, verify_server_deadline: bool) -> None:
        self.transport = transport
        self._client_for = client_for  # async () -> client (GrpcClient or TcpClient)
        self.verify_server_deadline = verify_server_deadline

    async def run(self, case: dict) -> None:
        kind = case.get("kind")
        handler = getattr(self, "case_" + str(kind), None)
        if handler is None:
            raise CaseFailed(f"unknown case kind {kind!r}")
        await handler(await self._client_for(), case)

    async def case_unary(self, client, case: dict) -> None:
        method = METHODS[case["rpc"]]
        request = json_format.ParseDict(case["request"], method.request_type())
        try:
            got = await client.unary(method, request)
        except CalcError as err:
            if "error" not in case:
                raise CaseFailed(f"error {err.describe()}; want response {json.dumps(case.get('response'))}")
            check_error(err, case["error"])
            return
        if "error" in case:
            raise expect_error(case["error"], f"response {_one_line(got)}")
        want = json_format.ParseDict(case["response"], method.response_type())
        if got != want:
            raise CaseFailed(f"response {_one_line(got)}, want {_one_line(want)}")

    async def _collect(self, stream) -> list:
        out = []
        while (msg := await stream.recv()) is not None:
            out.append(msg)
        return out

    def _compare_stream(self, got: list, want: list) -> None:
        if got == want:
            return
        if len(got) != len(want):
            raise CaseFailed(f"{len(got)} responses, want {len(want)}")
        for i, (g, w) in enumerate(zip(got, want)):
            if g != w:
                raise CaseFailed(f"response {i}: {_one_line(g)}, want {_one_line(w)}")

    async def _run_stream(self, client, case: dict, requests: list, want: list) -> None:
        stream = client.open_stream(METHODS[case["rpc"]])
        for r in requests:  # all sent before reading: the client must keep reading underneath
            await stream.send(r)
        await stream.half_close()
        try:
            got = await self._collect(stream)
        except CalcError as err:
            if "error" in case:
                check_error(err, case["error"])
                return
            raise CaseFailed(f"stream ended with {err.describe()}; want status OK")
        if "error" in case:
            raise expect_error(case["error"], f"stream ended OK after {len(got)} responses")
        self._compare_stream(got, want)

    async def case_stream(self, client, case: dict) -> None:
        method = METHODS[case["rpc"]]
        requests = [json_format.ParseDict(r, method.request_type()) for r in case["requests"]]
        want = [json_format.ParseDict(r, method.response_type()) for r in case.get("responses", [])]
        await self._run_stream(client, case, requests, want)

    async def case_stream_generated(self, client, case: dict) -> None:
        method = METHODS[case["rpc"]]
        op = pb.Operator.Value(case["operator"])
        rhs = int(case["rhs"])
        if op != pb.OPERATOR_MULTIPLY:
            raise CaseFailed(f"stream_generated with operator {case['operator']}: runner computes only MULTIPLY")
        n = int(case["count"])
        requests = [method.request_type(id=i, calculation=pb.CalculateRequest(operator=op, lhs=i, rhs=rhs))
                    for i in range(1, n + 1)]
        want = [method.response_type(id=i, result=i * rhs) for i in range(1, n + 1)]
        await self._run_stream(client, case, requests, want)

    async def case_stream_deadline(self, client, case: dict) -> None:
        timeout = case["timeout_ms"] / 1000.0
        start = time.monotonic()
        stream = client.open_stream(METHODS[case["rpc"]], timeout=timeout)
        try:
            msg = await stream.recv()
        except CalcError as err:
            check_error(err, case["error"])
            elapsed = time.monotonic() - start
            if elapsed < timeout * 0.9:
                raise CaseFailed(f"ended after {elapsed * 1000:.0f} ms, before its {case['timeout_ms']} ms deadline")
            if self.verify_server_deadline and getattr(err, "local", False):
                raise CaseFailed("the server did not end the call at its deadline (the client's own timer did)")
            return
        raise expect_error(case["error"], f"recv gave {'end of stream (OK)' if msg is None else _one_line(msg)}")

    async def case_stream_cancel(self, client, case: dict) -> None:
        method = METHODS[case["rpc"]]
        stream = client.open_stream(method)
        await stream.send(method.request_type(id=1, calculation=pb.CalculateRequest(
            operator=pb.OPERATOR_ADD, lhs=1, rhs=1)))
        first = await stream.recv()
        want = method.response_type(id=1, result=2)
        if first != want:
            raise CaseFailed(f"first response {first if first is None else _one_line(first)}, want {_one_line(want)}")
        stream.cancel()
        try:
            msg = await asyncio.wait_for(stream.recv(), 5.0)
        except asyncio.TimeoutError:
            raise CaseFailed("no final status within 5 s of the cancel") from None
        except CalcError as err:
            check_error(err, case["error"])
            return
        raise expect_error(case["error"], f"after cancel recv gave {'end of stream (OK)' if msg is None else _one_line(msg)}")

    async def case_concurrent(self, client, case: dict) -> None:
        method = METHODS[case["rpc"]]
        n = int(case["count"])
        if method.name != METHODS["Calculate"].name:
            raise CaseFailed(f"concurrent case for {case['rpc']}: runner knows only Calculate")
        results = await asyncio.gather(
            *(client.unary(method, pb.CalculateRequest(operator=pb.OPERATOR_ADD, lhs=i, rhs=i))
              for i in range(1, n + 1)),
            return_exceptions=True)
        bad = [(i, r) for i, r in enumerate(results, 1)
               if isinstance(r, BaseException) or r.result != 2 * i]
        if bad:
            i, r = bad[0]
            first = r.describe() if isinstance(r, CalcError) else (repr(r) if isinstance(r, BaseException)
                                                                  else _one_line(r))
            raise CaseFailed(f"{len(bad)} of {n} calls wrong; first: call {i} gave {first}, want result {2 * i}")


# --- main ------------------------------------------------------------------------


class Report:
    def __init__(self, verbose: bool) -> None:
        self.passed = 0
        self.failed = 0
        self.verbose = verbose

    def ok(self, name: str, transport: str, seconds: float = 0.0) -> None:
        self.passed += 1
        if self.verbose:
            print(f"ok   {name} [{transport}] {seconds * 1000:.0f} ms", file=sys.stderr)

    def fail(self, name: str, transport: str, why: str) -> None:
        self.failed += 1
        print(f"FAIL {name} [{transport}]: {why}", flush=True)


async def _run_transport(report: Report, transport: str, runner: Runner, cases: list, case_timeout: float) -> None:
    for case in cases:
        name = case.get("name", "?")
        start = time.monotonic()
        try:
            await asyncio.wait_for(runner.run(case), case_timeout)
        except CaseFailed as e:
            report.fail(name, transport, str(e))
        except CalcError as e:
            report.fail(name, transport, f"unexpected error {e.describe()}")
        except asyncio.TimeoutError:
            report.fail(name, transport, f"timed out after {case_timeout:g} s")
        except Exception as e:  # a bug or a broken connection: report it, go on
            report.fail(name, transport, f"{type(e).__name__}: {e}")
        else:
            report.ok(name, transport, time.monotonic() - start)


async def run(args) -> Report:
    report = Report(args.verbose)
    cases = json.loads(Path(args.cases).read_text())["cases"]
    vectors = json.loads(Path(args.vectors).read_text())["vectors"]

    for v in vectors:
        try:
            why = check_vector(v)
        except Exception as e:  # a decoder bug must show up as a failure, not a crash
            why = f"{type(e).__name__}: {e}"
        if why is None:
            report.ok(v["name"], "wire")
        else:
            report.fail(v["name"], "wire", why)

    # gRPC: one channel for every case.
    sec = dict(tls=args.tls, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
               tls_server_name=args.tls_server_name, token=args.token or None)
    grpc_client = GrpcClient(args.grpc, **sec)
    try:
        async def grpc_for():
            return grpc_client
        await _run_transport(report, "grpc", Runner("grpc", grpc_for, verify_server_deadline=False),
                             cases, args.case_timeout)
    finally:
        await grpc_client.close()

    # Raw TCP: one connection for every case (a new one only if a case broke it).
    host, _, port = args.tcp.rpartition(":")
    tcp_state: dict[str, Any] = {"client": None}

    async def tcp_for():
        c = tcp_state["client"]
        if c is None or not c.usable:
            if c is not None:
                await c.close()
                print(f"note: opening a new raw TCP connection (the previous one is "
                      f"{'closed' if c.closed else 'going away'})", file=sys.stderr)
            tcp_state["client"] = c = await TcpClient.connect(host.strip("[]"), int(port), deadline_grace=2.0,
                                                                 **sec)
        return c

    try:
        await _run_transport(report, "tcp", Runner("tcp", tcp_for, verify_server_deadline=True),
                             cases, args.case_timeout)
    finally:
        if tcp_state["client"] is not None:
            await tcp_state["client"].close()
    return report


def _address(s: str) -> str:
    host, sep, port = s.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"want HOST:PORT, got {s!r}")
    return s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m calc_client.conformance", description=__doc__.split("\n\n")[0])
    p.add_argument("--grpc", required=True, type=_address, help="gRPC address HOST:PORT")
    p.add_argument("--tcp", required=True, type=_address, help="raw TCP address HOST:PORT")
    p.add_argument("--cases", default=os.environ.get("CALC_CASES") or _find(CASES_PATH), help=CASES_PATH)
    p.add_argument("--vectors", default=os.environ.get("CALC_VECTORS") or _find(VECTORS_PATH), help=VECTORS_PATH)
    p.add_argument("--case-timeout", type=float, default=30.0, help="seconds per case and transport")
    p.add_argument("--tls", action="store_true", help="connect over TLS, trusting the system's roots "
                   "(implied by the other --tls options)")
    p.add_argument("--tls-ca", metavar="FILE", help="PEM CA certificates to trust instead of the system's")
    p.add_argument("--tls-cert", metavar="FILE", help="PEM client certificate, for mutual TLS (with --tls-key)")
    p.add_argument("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    p.add_argument("--tls-server-name", metavar="NAME", help="name to verify the server's certificate against")
    p.add_argument("--token", default=os.environ.get("CALC_TOKEN", ""),
                   help="bearer token sent on every call (default: env CALC_TOKEN, which ps cannot show)")
    p.add_argument("-v", "--verbose", action="store_true", help="also list passing cases (on stderr)")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    for what in ("cases", "vectors"):
        path = getattr(args, what)
        if not path or not Path(path).is_file():
            p.error(f"cannot find the {what} file; pass --{what} PATH")
    try:
        report = asyncio.run(run(args))
    except (OSError, ValueError, KeyError) as e:
        print(f"conformance: cannot run: {e!r}", file=sys.stderr)
        print("0 passed, 1 failed")
        return 2
    print(f"{report.passed} passed, {report.failed} failed", flush=True)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
