"""CalcError: one exception type for failed calls on either transport.

Both clients (gRPC and raw TCP) raise :class:`CalcError`, which carries the
``grpc.StatusCode`` and the decoded ``google.rpc.Status`` (code, message and
details as ``google.protobuf.Any``), so callers handle both transports alike::

    try:
        await client.calculate(req)
    except CalcError as err:
        if err.code is grpc.StatusCode.INVALID_ARGUMENT:
            print(err.field_violations(), err.reason)
"""
from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = ["CalcError", "code_from_number", "GRPC_DETAILS_METADATA_KEY"]

GRPC_DETAILS_METADATA_KEY = "grpc-status-details-bin"

_CODES_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def code_from_number(number: int) -> grpc.StatusCode:
    """Return the grpc.StatusCode for a status code number (UNKNOWN if there is none)."""
    return _CODES_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


class CalcError(Exception):
    """A call that ended with a non-OK status.

    Attributes:
        code: the ``grpc.StatusCode``.
        message: the status message.
        status: the full ``google.rpc.Status`` (its ``details`` are ``Any``).
        safe_to_retry: True when the server certainly did not process the
            call (raw TCP: the call's id was above a GOAWAY's last accepted
            id, or the connection was refused before the call was sent).
        transport: "grpc" or "tcp", for messages.
        local: True when this client produced the status itself (raw TCP:
            its deadline timer, a cancelled task, a lost connection, a
            GOAWAY) rather than receiving it from the server. gRPC cannot
            tell the two apart and always says False.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str = "",
        status: status_pb2.Status | None = None,
        *,
        safe_to_retry: bool = False,
        transport: str = "",
        local: bool = False,
    ) -> None:
        if status is None:
            status = status_pb2.Status(code=code.value[0], message=message)
        self.code = code
        self.message = message
        self.status = status
        self.safe_to_retry = safe_to_retry
        self.transport = transport
        self.local = local
        super().__init__(f"{code.name}: {message}")

    # --- construction -------------------------------------------------------

    @classmethod
    def from_status(cls, status: status_pb2.Status, **kwargs) -> "CalcError":
        """Build from a decoded google.rpc.Status (as a raw TCP STATUS frame carries)."""
        return cls(code_from_number(status.code), status.message, status, **kwargs)

    @classmethod
    def from_grpc(cls, err) -> "CalcError":
        """Build from a grpc.RpcError / grpc.aio.AioRpcError (anything with code(),
        details() and trailing_metadata()), decoding grpc-status-details-bin with
        grpcio-status."""
        code = err.code()
        message = err.details() or ""
        try:
            status = rpc_status.from_call(err)
        except ValueError:  # the rich status disagrees with the call's code/message
            status = None
            for key, value in err.trailing_metadata() or ():
                if key == GRPC_DETAILS_METADATA_KEY:
                    status = status_pb2.Status.FromString(value)
        if status is None:
            status = status_pb2.Status(code=code.value[0], message=message)
        return cls(code, message, status, transport="grpc")

    # --- details --------------------------------------------------------------

    @property
    def details(self) -> list[any_pb2.Any]:
        return list(self.status.details)

    def detail_types(self) -> list[str]:
        return [d.type_url for d in self.status.details]

    def _unpack_all(self, message_type) -> list:
        out = []
        for any_msg in self.status.details:
            if any_msg.Is(message_type.DESCRIPTOR):
                m = message_type()
                any_msg.Unpack(m)
                out.append(m)
        return out

    def bad_request(self) -> error_details_pb2.BadRequest | None:
        """The first google.rpc.BadRequest detail, if any."""
        found = self._unpack_all(error_details_pb2.BadRequest)
        return found[0] if found else None

    def error_info(self) -> error_details_pb2.ErrorInfo | None:
        """The first google.rpc.ErrorInfo detail, if any."""
        found = self._unpack_all(error_details_pb2.ErrorInfo)
        return found[0] if found else None

    def field_violations(self) -> list[str]:
        """The fields of every BadRequest field violation, in order."""
        return [v.field for br in self._unpack_all(error_details_pb2.BadRequest) for v in br.field_violations]

    @property
    def reason(self) -> str | None:
        info = self.error_info()
        return info.reason if info is not None else None

    @property
    def metadata(self) -> dict[str, str]:
        """The ErrorInfo metadata (e.g. ``offset`` for expression errors)."""
        info = self.error_info()
        return dict(info.metadata) if info is not None else {}

    def describe(self) -> str:
        parts = [f"{self.code.name} {self.message!r}"]
        info = self.error_info()
        if info is not None:
            parts.append(f"reason={info.reason} metadata={dict(info.metadata)}")
        fields = self.field_violations()
        if fields:
            parts.append(f"fields={fields}")
        if self.safe_to_retry:
            parts.append("safe_to_retry")
        if self.local:
            parts.append("(client-side)")
        return " ".join(parts)

