"""GrpcClient against an in-process grpc.aio server (same errors as TcpClient)."""
import asyncio

import grpc
import pytest
from grpc_status import rpc_status

from calc_client import CalcError, GrpcClient
from calc_client.gen.calculator.v1 import calculator_pb2 as pb
from calc_client.gen.calculator.v1 import calculator_pb2_grpc as pb_grpc

from fake_server import calculate

SC = grpc.StatusCode


class Service(pb_grpc.CalculatorServiceServicer):
    async def Calculate(self, request, context):
        result, st = calculate(request)
        if st is not None:
            await context.abort_with_status(rpc_status.to_status(st))
        return pb.CalculateResponse(result=result)

    async def Evaluate(self, request, context):
        return pb.EvaluateResponse(result=request.expression, exact=True)

    async def CalculateStream(self, request_iterator, context):
        async for req in request_iterator:
            result, st = calculate(req.calculation)
            yield pb.CalculateStreamResponse(id=req.id, result=result or 0)


def run(fn):
    def wrapper():
        async def main():
            server = grpc.aio.server()
            pb_grpc.add_CalculatorServiceServicer_to_server(Service(), server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            try:
                async with GrpcClient(f"127.0.0.1:{port}") as client:
                    await asyncio.wait_for(fn(client), 10)
            finally:
                await server.stop(None)
        asyncio.run(main())
    wrapper.__name__ = fn.__name__
    return wrapper


@run
async def test_unary_and_rich_error(client):
    assert (await client.calculate(pb.CalculateRequest(operator=pb.OPERATOR_ADD, lhs=2, rhs=3))).result == 5
    with pytest.raises(CalcError) as ei:
        await client.calculate(pb.CalculateRequest(operator=pb.OPERATOR_DIVIDE, lhs=1, rhs=0), timeout=5)
    e = ei.value
    assert e.code is SC.INVALID_ARGUMENT and e.message == "division by zero: 1 / 0"
    assert e.reason == "DIVISION_BY_ZERO" and e.field_violations() == ["rhs"] and e.transport == "grpc"
    assert e.detail_types() == ["type.googleapis.com/google.rpc.BadRequest",
                                "type.googleapis.com/google.rpc.ErrorInfo"]


@run
async def test_stream_cancel_deadline(client):
    s = client.calculate_stream()
    for i in range(1, 4):
        await s.send(pb.CalculateStreamRequest(id=i, calculation=pb.CalculateRequest(
            operator=pb.OPERATOR_ADD, lhs=i, rhs=i)))
    await s.half_close()
    assert [(m.id, m.result) async for m in s] == [(1, 2), (2, 4), (3, 6)]

    s = client.calculate_stream()
    await s.send(pb.CalculateStreamRequest(id=1, calculation=pb.CalculateRequest(
        operator=pb.OPERATOR_ADD, lhs=1, rhs=1)))
    assert (await s.recv()).result == 2
    s.cancel()
    with pytest.raises(CalcError) as ei:
        await s.recv()
    assert ei.value.code is SC.CANCELLED

    s = client.calculate_stream(timeout=0.1)
    with pytest.raises(CalcError) as ei:
        await s.recv()
    assert ei.value.code is SC.DEADLINE_EXCEEDED


@run
async def test_generic_unary_by_name(client):
    resp = await client.unary("/calculator.v1.CalculatorService/Evaluate", pb.EvaluateRequest(expression="7 / 2"))
    assert resp.result == "7 / 2"
