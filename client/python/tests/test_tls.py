"""TLS, mutual TLS and bearer tokens.

The option checks run everywhere. The live tests run only when the
environment names a calcd started with --tls-cert/--tls-key, --tls-client-ca
and --auth-tokens (scripts/interop.sh's python+tls pass sets these):

    CALC_TLS_TCP, CALC_TLS_GRPC   its raw TCP and gRPC addresses (HOST:PORT)
    CALC_TLS_CA                   the CA that signed its certificate
    CALC_TLS_CERT, CALC_TLS_KEY   a client certificate that CA signed
    CALC_TOKEN                    a token its policy allows every method

and, optionally, CALC_TLS_SERVER_CERT / CALC_TLS_SERVER_KEY (a certificate
for localhost) for the check that a server without ALPN calc/1 is refused.
"""
import asyncio
import os
import ssl

import grpc
import pytest

from calc_client import CalcError, GrpcClient, TcpChannel, TcpClient
from calc_client.gen.calculator.v1 import calculator_pb2 as pb
from calc_client.security import check_token, is_loopback, tcp_ssl_context, TlsOptions

LIVE = ("CALC_TLS_TCP", "CALC_TLS_GRPC", "CALC_TLS_CA", "CALC_TLS_CERT", "CALC_TLS_KEY", "CALC_TOKEN")
env = {k: os.environ.get(k, "") for k in LIVE}
live = pytest.mark.skipif(not all(env.values()), reason="no TLS calcd: set " + ", ".join(LIVE))

ADD = pb.CalculateRequest(operator=pb.OPERATOR_ADD, lhs=2, rhs=3)
BOUND = 15.0  # no negative case may take longer than this (no hang)


def run(coro_fn):
    return asyncio.run(asyncio.wait_for(coro_fn(), BOUND))


def mtls(**kw):
    return dict(tls_ca=env["CALC_TLS_CA"], tls_cert=env["CALC_TLS_CERT"], tls_key=env["CALC_TLS_KEY"], **kw)


# --- options, no server needed ------------------------------------------------------


def test_is_loopback():
    for h in ("localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"):
        assert is_loopback(h), h
    for h in ("example.com", "10.0.0.1", "0.0.0.0", "::", "", "localhost.example.com"):
        assert not is_loopback(h), h


def test_token_refused_in_plaintext_to_remote_host():
    check_token("t", False, "127.0.0.1")
    check_token("t", True, "example.com")
    check_token(None, False, "example.com")
    with pytest.raises(ValueError, match="plaintext"):
        check_token("t", False, "example.com")

    async def tcp():
        with pytest.raises(ValueError, match="plaintext"):  # raised before any connection is attempted
            await TcpClient.connect("192.0.2.1", 4000, token="t", connect_timeout=0.5)

    asyncio.run(tcp())

    async def grpc_():
        with pytest.raises(ValueError, match="plaintext"):
            GrpcClient("192.0.2.1:50051", token="t")
        with pytest.raises(ValueError, match="plaintext"):
            GrpcClient("dns:///calc.example.com:50051", token="t")
        await GrpcClient("localhost:50051", token="t").close()  # loopback: allowed
        await GrpcClient("192.0.2.1:50051", token="t", tls=True).close()  # TLS: allowed

    asyncio.run(grpc_())


def test_tcp_context():
    ctx = tcp_ssl_context(TlsOptions(enabled=True))
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    with pytest.raises(ValueError, match="together"):
        tcp_ssl_context(TlsOptions(cert="c.pem"))


def test_token_metadata_on_every_tcp_call():
    from fake_server import FakeServer  # the in-process fake raw TCP server of test_tcp.py

    async def main():
        async with FakeServer() as srv:
            async with await TcpClient.connect("127.0.0.1", srv.port, token="s3cret") as c:
                assert (await c.calculate(ADD, timeout=5)).result == 5
                assert (await c.calculate(ADD, timeout=5, metadata=[("x-a", "b")])).result == 5
                stream = c.calculate_stream(timeout=5)
                await stream.half_close()
                assert [m async for m in stream] == []
            heads = srv.conn.headers
        assert heads[1].metadata == [("authorization", b"Bearer s3cret")]
        assert heads[2].metadata == [("authorization", b"Bearer s3cret"), ("x-a", b"b")]
        assert heads[3].metadata == [("authorization", b"Bearer s3cret")]

    asyncio.run(main())


# --- against a TLS calcd ------------------------------------------------------------


@live
def test_tcp_mtls_token_calls():
    async def main():
        async with await TcpClient.connect_address(env["CALC_TLS_TCP"], token=env["CALC_TOKEN"], **mtls()) as c:
            sslobj = c._transport.get_extra_info("ssl_object")
            assert sslobj.selected_alpn_protocol() == "calc/1"
            assert sslobj.version() == "TLSv1.3"
            assert (await c.calculate(ADD, timeout=5)).result == 5
            assert (await c.evaluate(pb.EvaluateRequest(expression="2 * (3 + 4)"), timeout=5)).result == "14"
            got = await asyncio.gather(*(c.calculate(pb.CalculateRequest(operator=pb.OPERATOR_ADD, lhs=i, rhs=i))
                                         for i in range(1, 51)))
            assert [r.result for r in got] == [2 * i for i in range(1, 51)]
            stream = c.calculate_stream(timeout=5)
            for i in (1, 2, 3):
                await stream.send(pb.CalculateStreamRequest(
                    id=i, calculation=pb.CalculateRequest(operator=pb.OPERATOR_MULTIPLY, lhs=i, rhs=7)))
            await stream.half_close()
            assert [(m.id, m.result) for m in [m async for m in stream]] == [(1, 7), (2, 14), (3, 21)]

    run(main)


@live
def test_tcp_channel_mtls_token_calls():
    port = env["CALC_TLS_TCP"].rpartition(":")[2]

    async def main():
        # a dns:/// target's certificate is verified against its name (localhost), not the resolved address
        for target in (env["CALC_TLS_TCP"], [env["CALC_TLS_TCP"]], f"dns:///localhost:{port}"):
            async with TcpChannel(target, token=env["CALC_TOKEN"], **mtls()) as ch:
                await ch.wait_ready(10)
                assert (await ch.calculate(ADD, timeout=5)).result == 5
                got = await asyncio.gather(*(ch.calculate(pb.CalculateRequest(operator=pb.OPERATOR_ADD, lhs=i, rhs=i),
                                                          timeout=5) for i in range(1, 21)))
                assert [r.result for r in got] == [2 * i for i in range(1, 21)]
        async with TcpChannel(env["CALC_TLS_TCP"], **mtls()) as ch:  # no token: refused, not retried
            with pytest.raises(CalcError) as e:
                await ch.calculate(ADD, timeout=5)
            assert e.value.code is grpc.StatusCode.UNAUTHENTICATED, e.value.describe()
        async with TcpChannel(env["CALC_TLS_TCP"], token=env["CALC_TOKEN"], tls=True) as ch:  # the wrong CA
            with pytest.raises(CalcError) as e:
                await ch.wait_ready(10)
            assert e.value.code is grpc.StatusCode.UNAVAILABLE and "CERTIFICATE_VERIFY_FAILED" in e.value.message

    run(main)


@live
def test_grpc_mtls_token_calls():
    async def main():
        async with GrpcClient(env["CALC_TLS_GRPC"], token=env["CALC_TOKEN"], **mtls()) as g:
            assert (await g.calculate(ADD, timeout=5)).result == 5
            assert (await g.evaluate(pb.EvaluateRequest(expression="2 * (3 + 4)"), timeout=5)).result == "14"
            stream = g.calculate_stream(timeout=5)
            await stream.send(pb.CalculateStreamRequest(
                id=1, calculation=pb.CalculateRequest(operator=pb.OPERATOR_MULTIPLY, lhs=6, rhs=7)))
            await stream.half_close()
            assert [m.result async for m in stream] == [42]

    run(main)


@live
@pytest.mark.parametrize("token", [None, "not-the-token"])
def test_unauthenticated(token):
    async def main():
        async with await TcpClient.connect_address(env["CALC_TLS_TCP"], token=token, **mtls()) as c:
            with pytest.raises(CalcError) as e:
                await c.calculate(ADD, timeout=5)
            assert e.value.code is grpc.StatusCode.UNAUTHENTICATED, e.value.describe()
            assert not e.value.local
        async with GrpcClient(env["CALC_TLS_GRPC"], token=token, **mtls()) as g:
            with pytest.raises(CalcError) as e:
                await g.calculate(ADD, timeout=5)
            assert e.value.code is grpc.StatusCode.UNAUTHENTICATED, e.value.describe()

    run(main)


@live
@pytest.mark.parametrize("case", ["wrong CA", "no client certificate"])
def test_tls_refused(case):
    # "wrong CA": the system's roots, which did not sign calcd's certificate; the client refuses the server.
    # "no client certificate": the server refuses the client (an alert on the client's first read).
    kw = dict(tls=True) if case == "wrong CA" else dict(tls_ca=env["CALC_TLS_CA"])

    async def main():
        with pytest.raises(CalcError) as e:
            await TcpClient.connect_address(env["CALC_TLS_TCP"], token=env["CALC_TOKEN"], connect_timeout=5, **kw)
        assert e.value.code is grpc.StatusCode.UNAVAILABLE, e.value.describe()
        want = "CERTIFICATE_VERIFY_FAILED" if case == "wrong CA" else "CERTIFICATE_REQUIRED"
        assert want in e.value.message, e.value.message
        async with GrpcClient(env["CALC_TLS_GRPC"], token=env["CALC_TOKEN"], **kw) as g:
            with pytest.raises(CalcError) as e:
                await g.calculate(ADD, timeout=5)
            assert e.value.code is grpc.StatusCode.UNAVAILABLE, e.value.describe()

    run(main)


@live
def test_plaintext_client_gets_goaway():
    async def main():
        with pytest.raises(CalcError) as e:
            await TcpClient.connect_address(env["CALC_TLS_TCP"], connect_timeout=5)
        assert e.value.code is grpc.StatusCode.UNAVAILABLE
        assert "requires TLS" in e.value.message, e.value.message

    run(main)


@pytest.mark.skipif(not (os.environ.get("CALC_TLS_SERVER_CERT") and os.environ.get("CALC_TLS_SERVER_KEY")
                         and env["CALC_TLS_CA"]),
                    reason="set CALC_TLS_SERVER_CERT, CALC_TLS_SERVER_KEY and CALC_TLS_CA")
def test_server_without_alpn_refused():
    async def main():
        sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        sctx.load_cert_chain(os.environ["CALC_TLS_SERVER_CERT"], os.environ["CALC_TLS_SERVER_KEY"])
        got = []

        async def handle(reader, writer):
            got.append(await reader.read(4))
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=sctx)  # no ALPN: selects none
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(CalcError) as e:
                await TcpClient.connect("127.0.0.1", port, tls_ca=env["CALC_TLS_CA"], connect_timeout=5)
        assert e.value.code is grpc.StatusCode.UNAVAILABLE
        assert "ALPN" in e.value.message, e.value.message
        assert got in ([], [b""]), "the client sent the preface to a server without ALPN calc/1"

    run(main)
