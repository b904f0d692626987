"""Minimal calls over calc's raw TCP protocol: python examples/tcp_call.py [HOST:PORT]"""
import asyncio
import sys

from calc_client import CalcError, TcpClient
from calc_client.pb import (CalculateRequest, CalculateStreamRequest, EvaluateRequest,
                            OPERATOR_ADD, OPERATOR_DIVIDE, OPERATOR_MULTIPLY)

host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:4000").rpartition(":")


async def main() -> None:
    async with await TcpClient.connect(host, int(port)) as client:
        resp = await client.calculate(CalculateRequest(operator=OPERATOR_ADD, lhs=2, rhs=3), timeout=5)
        print("calculate:", resp.result)

        # many calls in flight on the one connection, answers paired by id
        results = await asyncio.gather(*(client.calculate(CalculateRequest(operator=OPERATOR_ADD, lhs=i, rhs=i))
                                         for i in range(1, 101)))
        print("100 concurrent calls, last:", results[-1].result)

        third = await client.evaluate(EvaluateRequest(expression="1 / 3"))
        print("evaluate:", third.result, "exact" if third.exact else "rounded")

        try:
            await client.calculate(CalculateRequest(operator=OPERATOR_DIVIDE, lhs=1, rhs=0),
                                   metadata=[("authorization", "Bearer t0ken")])
        except CalcError as err:
            print("error:", err.code.name, err.message, err.reason, err.field_violations())

        stream = client.calculate_stream(timeout=5)
        for i in (1, 2, 3):
            await stream.send(CalculateStreamRequest(
                id=i, calculation=CalculateRequest(operator=OPERATOR_MULTIPLY, lhs=i, rhs=7)))
        await stream.half_close()
        async for answer in stream:
            print("stream:", answer.id, answer.result)

        print(f"ping: {await client.ping() * 1e6:.0f} us")


asyncio.run(main())
