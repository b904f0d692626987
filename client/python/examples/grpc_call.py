"""Minimal calls over gRPC: python examples/grpc_call.py [HOST:PORT]"""
import asyncio
import sys

import grpc

from calc_client import CalcError, GrpcClient
from calc_client.pb import CalculateRequest, CalculatorServiceStub, OPERATOR_ADD, OPERATOR_DIVIDE

target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"

# 1. The generated stub, synchronous, as grpcio users know it.
with grpc.insecure_channel(target) as channel:
    stub = CalculatorServiceStub(channel)
    print("sync stub:", stub.Calculate(CalculateRequest(operator=OPERATOR_ADD, lhs=2, rhs=3), timeout=5).result)


# 2. calc_client's asyncio wrapper: same API and errors as the raw TCP client.
async def main() -> None:
    async with GrpcClient(target) as client:
        resp = await client.calculate(CalculateRequest(operator=OPERATOR_ADD, lhs=2, rhs=3), timeout=5)
        print("GrpcClient:", resp.result)
        try:
            await client.calculate(CalculateRequest(operator=OPERATOR_DIVIDE, lhs=1, rhs=0))
        except CalcError as err:
            print("error:", err.code.name, err.message, err.reason, err.field_violations())


asyncio.run(main())
