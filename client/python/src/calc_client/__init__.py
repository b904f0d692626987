"""calc_client: Python clients for calc's calculator.v1.CalculatorService.

* :class:`GrpcClient` — gRPC (grpcio, asyncio API).
* :class:`TcpClient` — calc's raw TCP protocol v1 (asyncio), see PROTOCOL.md:
  one connection.
* :class:`TcpChannel` — raw TCP to one or more servers, reconnecting with
  backoff (:class:`Backoff`), balancing and retrying as the Go client does.
* :class:`CalcError` — what both raise for a non-OK status: a grpc.StatusCode
  plus the decoded google.rpc.Status with its BadRequest / ErrorInfo details.
* :mod:`calc_client.wire` — the sans-IO framing layer; :mod:`calc_client.pb`
  re-exports the generated messages.
* ``python -m calc_client.conformance --grpc HOST:PORT --tcp HOST:PORT`` runs
  the shared conformance cases and wire vectors.
"""
from .backoff import Backoff
from .channel import TcpChannel
from .errors import CalcError
from .grpc_client import GrpcClient, GrpcStream
from .tcp import TcpClient, TcpStream

__all__ = ["Backoff", "CalcError", "GrpcClient", "GrpcStream", "TcpChannel", "TcpClient", "TcpStream"]
__version__ = "0.1.0"
