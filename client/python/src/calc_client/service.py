"""The calculator.v1.CalculatorService methods, as both transports name them.

Derived from the generated descriptors, so a method added to the proto shows
up here after regeneration.
"""
from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import message_factory

from .gen.calculator.v1 import calculator_pb2

SERVICE_NAME = "calculator.v1.CalculatorService"


@dataclass(frozen=True, slots=True)
class Method:
    """One RPC method: its full name on the wire and its message classes."""

    name: str  # "/calculator.v1.CalculatorService/Calculate"
    request_type: type
    response_type: type
    client_streaming: bool
    server_streaming: bool

    @property
    def streaming(self) -> bool:
        return self.client_streaming or self.server_streaming


def _methods() -> dict[str, Method]:
    svc = calculator_pb2.DESCRIPTOR.services_by_name[SERVICE_NAME.rsplit(".", 1)[1]]
    out = {}
    for m in svc.methods:
        out[m.name] = Method(
            name=f"/{svc.full_name}/{m.name}",
            request_type=message_factory.GetMessageClass(m.input_type),
            response_type=message_factory.GetMessageClass(m.output_type),
            client_streaming=m.client_streaming,
            server_streaming=m.server_streaming,
        )
    return out


METHODS: dict[str, Method] = _methods()
METHODS_BY_FULL_NAME: dict[str, Method] = {m.name: m for m in METHODS.values()}

CALCULATE = METHODS["Calculate"]
EVALUATE = METHODS["Evaluate"]
CALCULATE_STREAM = METHODS["CalculateStream"]
