"""What the two stream classes share: reading a call's messages to its end."""

from __future__ import annotations

from typing import AsyncIterator

from google.protobuf.message import Message


class MessageReader:
    """Async iteration and ``status()`` over a stream's ``recv()``.

    ``recv()`` returns the next message, None once the call ended with status
    OK, and raises :class:`calc_client.errors.CalcError` if it ended with
    another status. :class:`calc_client.tcp.TcpStream` and
    :class:`calc_client.grpc_client.GrpcStream` implement it.
    """

    async def recv(self) -> Message | None:
        raise NotImplementedError

    def __aiter__(self) -> AsyncIterator[Message]:
        return self

    async def __anext__(self) -> Message:
        msg = await self.recv()
        if msg is None:
            raise StopAsyncIteration
        return msg

    async def status(self) -> None:
        """Wait for the end of the call, discarding unread messages; raises its error if not OK."""
        while await self.recv() is not None:
            pass
