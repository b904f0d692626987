"""The generated calculator.v1 messages and stub, under a short name:
``from calc_client.pb import CalculateRequest, OPERATOR_ADD``."""
from .gen.calculator.v1.calculator_pb2 import *  # noqa: F401,F403
from .gen.calculator.v1.calculator_pb2 import DESCRIPTOR  # noqa: F401
from .gen.calculator.v1.calculator_pb2_grpc import CalculatorServiceStub  # noqa: F401
