"""calc's raw TCP wire protocol v1 (PROTOCOL.md), with no sockets in it.

This module is the byte-level half of the raw TCP client: the connection
preface, frame encoding, an incremental frame decoder that checks every
length before buffering anything, request headers, settings, goaway, status
payloads and snappy message compression. :mod:`calc_client.tcp` drives it
over an asyncio connection; the conformance runner feeds it the test vectors.

A frame is::

    length u32 | kind u8 | flags u8 | id u32 | payload (length - 6 bytes)

with ``length`` counting the 6 header bytes plus the payload.
"""
from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

import snappy
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

# --- constants ----------------------------------------------------------------

MAGIC = b"CALC"
VERSION = 1
PREFACE = MAGIC + bytes([VERSION])
PREFACE_SIZE = len(PREFACE)
LENGTH_SIZE = 4
HEADER_SIZE = 6
FRAME_OVERHEAD = LENGTH_SIZE + HEADER_SIZE

DEFAULT_MAX_MESSAGE_SIZE = 4 << 20
DEFAULT_MAX_FRAME_SIZE = DEFAULT_MAX_MESSAGE_SIZE + (16 << 10)
DEFAULT_COMPRESS_THRESHOLD = 256
DEFAULT_MAX_CONCURRENT_CALLS = 1024
DEFAULT_IDLE_TIMEOUT_MILLIS = 300_000

MAX_METHOD_REF = (1 << 16) - 1
MAX_METHOD_NAME_LEN = 512
MAX_METADATA_LEN = 8 << 10
MAX_METHOD_REFS = 256
MAX_PING_PAYLOAD = 64
MAX_UINT32 = (1 << 32) - 1

_HEADER = struct.Struct(">IBBI")  # length, kind, flags, id


class Kind(enum.IntEnum):
    SETTINGS = 0x01
    REQUEST = 0x02
    MESSAGE = 0x03
    HALF_CLOSE = 0x04
    RESPONSE = 0x05
    STATUS = 0x06
    CANCEL = 0x07
    PING = 0x08
    PONG = 0x09
    GOAWAY = 0x0A


_KNOWN_KINDS = frozenset(int(k) for k in Kind)


def kind_name(kind: int) -> str:
    """The kind's name (e.g. "REQUEST"), or its hex value ("0x42") if unknown."""
    return Kind(kind).name if kind in _KNOWN_KINDS else f"0x{kind:02X}"


class Flag(enum.IntFlag):
    COMPRESSED = 0x01  # REQUEST, MESSAGE, RESPONSE: the message is one snappy block
    METHOD_NAME = 0x02  # REQUEST: the header binds the method ref to a name
    DEADLINE = 0x04  # REQUEST: the header carries a deadline budget
    METADATA = 0x08  # REQUEST: the header carries metadata


class Setting(enum.IntEnum):
    MAX_FRAME_SIZE = 1
    MAX_MESSAGE_SIZE = 2
    COMPRESS_THRESHOLD = 3
    MAX_CONCURRENT_CALLS = 4
    IDLE_TIMEOUT_MILLIS = 5


# --- errors -------------------------------------------------------------------


class WireError(Exception):
    """A protocol error. ``name`` is the name the test vectors use."""

    name = "WIRE_ERROR"


class BadMagic(WireError):
    name = "BAD_MAGIC"


class FrameTooLarge(WireError):
    name = "FRAME_TOO_LARGE"


class FrameTooSmall(WireError):
    name = "FRAME_TOO_SMALL"


class UnknownKind(WireError):
    name = "UNKNOWN_KIND"


class Truncated(WireError):
    name = "TRUNCATED"


class MessageTooLarge(WireError):
    name = "MESSAGE_TOO_LARGE"


class CorruptMessage(WireError):
    name = "CORRUPT_MESSAGE"


class BadHeader(WireError):
    name = "BAD_HEADER"


class BadPayload(WireError):
    name = "BAD_PAYLOAD"


# --- varints and strings ------------------------------------------------------


def encode_uvarint(v: int) -> bytes:
    if v < 0:
        raise ValueError("uvarint of a negative number")
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def decode_uvarint(buf: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
    """Decode a uvarint at buf[pos:]; returns (value, new_pos).

    Raises ValueError for a varint that runs past the buffer or is longer than
    10 bytes / overflows 64 bits (as Go's binary.Uvarint rejects).
    """
    result = 0
    shift = 0
    for i in range(10):
        if pos + i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos + i]
        if i == 9 and b > 1:
            raise ValueError("varint overflows 64 bits")
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos + i + 1
        shift += 7
    raise ValueError("varint longer than 10 bytes")


def encode_string(s: bytes) -> bytes:
    return encode_uvarint(len(s)) + s


# --- preface and frames ---------------------------------------------------------


def read_preface(data: bytes) -> int:
    """Check a client connection preface and return its version byte.

    Fails with BadMagic as soon as the first four bytes are not ``CALC``
    (as a server does, without waiting for a fifth byte), and with Truncated
    if the input ends early.
    """
    head = bytes(data[: len(MAGIC)])
    if head != MAGIC[: len(head)]:
        raise BadMagic(f"bad connection preface magic {head.hex()}")
    if len(data) < PREFACE_SIZE:
        raise Truncated(f"preface of {len(data)} bytes")
    return data[len(MAGIC)]


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    flags: int
    id: int
    payload: bytes = b""

    @property
    def kind_name(self) -> str:
        return kind_name(self.kind)

    def encode(self) -> bytes:
        return encode_frame(self.kind, self.flags, self.id, self.payload)


def encode_frame(kind: int, flags: int, call_id: int, payload: bytes = b"") -> bytes:
    return _HEADER.pack(HEADER_SIZE + len(payload), kind, flags, call_id) + payload


def encode_frame_header(kind: int, flags: int, call_id: int, payload_len: int) -> bytes:
    return _HEADER.pack(HEADER_SIZE + payload_len, kind, flags, call_id)


class FrameDecoder:
    """Incremental frame decoder.

    ``feed()`` bytes as they arrive, then call ``next_frame()`` until it
    returns None (more bytes needed). The length prefix is checked against
    ``max_frame_size`` as soon as its 4 bytes are in, before any payload is
    buffered, and the decoder only ever holds bytes that actually arrived.
    ``finish()`` at end of input raises Truncated if a frame was cut off.
    Errors are sticky: the stream has no findable frame boundary after one.
    """

    __slots__ = ("max_frame_size", "_buf", "_pos", "_error")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.max_frame_size = max_frame_size if max_frame_size > 0 else DEFAULT_MAX_FRAME_SIZE
        self._buf = bytearray()
        self._pos = 0
        self._error: WireError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next_frame(self) -> Frame | None:
        if self._error is not None:
            raise self._error
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < LENGTH_SIZE:
            return None
        (length,) = struct.unpack_from(">I", buf, pos)
        if length > self.max_frame_size:
            self._error = FrameTooLarge(f"frame length {length} > {self.max_frame_size}")
            raise self._error
        if length < HEADER_SIZE:
            self._error = FrameTooSmall(f"frame length {length} < {HEADER_SIZE}")
            raise self._error
        total = LENGTH_SIZE + length
        if avail < total:
            return None
        _, kind, flags, call_id = _HEADER.unpack_from(buf, pos)
        payload = bytes(buf[pos + FRAME_OVERHEAD : pos + total])
        self._pos = pos + total
        if kind not in _KNOWN_KINDS:
            self._error = UnknownKind(f"unknown frame kind {kind_name(kind)}")
            raise self._error
        return Frame(kind, flags, call_id, payload)

    def frames(self) -> list[Frame]:
        """All whole frames buffered now (raises on a decoding error)."""
        out = []
        while (f := self.next_frame()) is not None:
            out.append(f)
        return out

    def finish(self) -> None:
        """Call at end of input: raises Truncated if bytes of a frame are left."""
        if self._error is not None:
            raise self._error
        if self.buffered:
            self._error = Truncated(f"stream ended {self.buffered} bytes into a frame")
            raise self._error


# --- request header -------------------------------------------------------------


@dataclass(slots=True)
class RequestHeader:
    method_ref: int
    method_name: str | None = None  # set: FlagMETHOD_NAME binds method_ref to it
    timeout_us: int | None = None  # set: Flag.DEADLINE with this budget in microseconds
    metadata: list[tuple[str, bytes]] = field(default_factory=list)  # Flag.METADATA


def _md_bytes(v: str | bytes) -> bytes:
    return v if isinstance(v, bytes) else v.encode("utf-8")


def validate_metadata(metadata) -> list[tuple[str, bytes]]:
    """Normalise metadata to [(key, value bytes)] and check it fits the protocol."""
    out: list[tuple[str, bytes]] = []
    total = 0
    for key, value in metadata or ():
        if not key or key != key.lower() or not key.isascii():
            raise ValueError(f"metadata key {key!r} must be non-empty lower-case ASCII")
        vb = _md_bytes(value)
        total += len(key) + len(vb)
        out.append((key, vb))
    if total > MAX_METADATA_LEN:
        raise ValueError(f"metadata of {total} bytes exceeds {MAX_METADATA_LEN}")
    return out


def encode_request_header(h: RequestHeader) -> tuple[bytes, int]:
    """Encode a request header; returns (bytes, flags to OR into the REQUEST frame)."""
    if not 1 <= h.method_ref <= MAX_METHOD_REF:
        raise ValueError(f"method ref {h.method_ref} out of range 1..{MAX_METHOD_REF}")
    flags = 0
    parts = [encode_uvarint(h.method_ref)]
    if h.method_name:
        name = h.method_name.encode("utf-8")
        if len(name) > MAX_METHOD_NAME_LEN:
            raise ValueError(f"method name of {len(name)} bytes exceeds {MAX_METHOD_NAME_LEN}")
        flags |= Flag.METHOD_NAME
        parts.append(encode_string(name))
    if h.timeout_us is not None:
        flags |= Flag.DEADLINE
        parts.append(encode_uvarint(max(0, int(h.timeout_us))))
    if h.metadata:
        flags |= Flag.METADATA
        parts.append(encode_uvarint(len(h.metadata)))
        for k, v in h.metadata:
            parts.append(encode_string(k.encode("ascii")))
            parts.append(encode_string(_md_bytes(v)))
    return b"".join(parts), int(flags)


def _header_uvarint(buf: bytes, pos: int, limit: int, what: str) -> tuple[int, int]:
    try:
        v, pos = decode_uvarint(buf, pos)
    except ValueError as e:
        raise BadHeader(f"bad {what} varint: {e}") from None
    if v > limit:
        raise BadHeader(f"{what} {v} exceeds {limit}")
    return v, pos


def _header_string(buf: bytes, pos: int, limit: int, what: str) -> tuple[bytes, int]:
    n, pos = _header_uvarint(buf, pos, limit, what + " length")
    if len(buf) - pos < n:
        raise BadHeader(f"{what} runs past the payload")
    return bytes(buf[pos : pos + n]), pos + n


def parse_request_header(flags: int, payload: bytes) -> tuple[RequestHeader, bytes]:
    """Decode the header at the start of a REQUEST payload; returns (header, message bytes)."""
    ref, pos = _header_uvarint(payload, 0, MAX_METHOD_REF, "method ref")
    if ref == 0:
        raise BadHeader("method ref 0")
    h = RequestHeader(method_ref=ref)
    if flags & Flag.METHOD_NAME:
        name, pos = _header_string(payload, pos, MAX_METHOD_NAME_LEN, "method name")
        if not name:
            raise BadHeader("empty method name")
        h.method_name = name.decode("utf-8", errors="replace")
    if flags & Flag.DEADLINE:
        h.timeout_us, pos = _header_uvarint(payload, pos, 100 * 365 * 24 * 3600 * 1_000_000, "deadline")
    if flags & Flag.METADATA:
        n, pos = _header_uvarint(payload, pos, MAX_METADATA_LEN // 2, "metadata count")
        budget = MAX_METADATA_LEN
        for _ in range(n):
            k, pos = _header_string(payload, pos, budget, "metadata")
            budget -= len(k)
            v, pos = _header_string(payload, pos, budget, "metadata")
            budget -= len(v)
            h.metadata.append((k.decode("latin-1"), v))
    return h, bytes(payload[pos:])


# --- messages (snappy block compression) -------------------------------------------


def snappy_decoded_len(block: bytes) -> int:
    """The decoded length a snappy block claims (its uvarint prefix), read without decoding."""
    try:
        n, _ = decode_uvarint(block, 0)
    except ValueError:
        raise CorruptMessage("snappy: bad decoded-length varint") from None
    if n > MAX_UINT32:
        raise CorruptMessage("snappy: decoded length overflows 32 bits")
    return n


def encode_message(msg: bytes, threshold: int = DEFAULT_COMPRESS_THRESHOLD) -> tuple[bytes, int]:
    """Encode a message for a frame: snappy-compressed (with Flag.COMPRESSED) when it is
    at least ``threshold`` bytes and the block is smaller, as is otherwise.
    ``threshold <= 0`` disables compression."""
    if threshold <= 0 or len(msg) < threshold:
        return msg, 0
    block = snappy.compress(msg)
    if len(block) >= len(msg):
        return msg, 0
    return block, int(Flag.COMPRESSED)


def decode_message(payload: bytes, flags: int, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> bytes:
    """Return the message carried in a frame's payload.

    A compressed payload's decoded length is checked against
    ``max_message_size`` before anything is decoded (no snappy bombs).
    Raises MessageTooLarge or CorruptMessage.
    """
    if not flags & Flag.COMPRESSED:
        if len(payload) > max_message_size:
            raise MessageTooLarge(f"message of {len(payload)} bytes > {max_message_size}")
        return bytes(payload)
    n = snappy_decoded_len(payload)
    if n > max_message_size:
        raise MessageTooLarge(f"snappy decoded length {n} > {max_message_size}")
    try:
        out = snappy.uncompress(bytes(payload))
    except Exception as e:  # python-snappy raises UncompressError; be defensive
        raise CorruptMessage(f"corrupt snappy block: {e!r}") from None
    if len(out) != n:
        raise CorruptMessage(f"snappy block decoded to {len(out)} bytes, claimed {n}")
    return out


# --- settings, goaway, status ------------------------------------------------------


@dataclass(slots=True)
class Settings:
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    compress_threshold: int = DEFAULT_COMPRESS_THRESHOLD
    max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS
    idle_timeout_millis: int = DEFAULT_IDLE_TIMEOUT_MILLIS

    def as_dict(self) -> dict[str, int]:
        return {s.name: getattr(self, s.name.lower()) for s in Setting}


def parse_settings(payload: bytes) -> Settings:
    """Decode a SETTINGS payload (6-byte entries); unknown ids are ignored and
    ids not present keep their protocol defaults."""
    if len(payload) % 6:
        raise BadPayload(f"SETTINGS payload of {len(payload)} bytes")
    s = Settings()
    known = {int(x): x.name.lower() for x in Setting}
    for off in range(0, len(payload), 6):
        sid, value = struct.unpack_from(">HI", payload, off)
        if sid in known:
            setattr(s, known[sid], value)
    return s


def encode_settings(s: Settings) -> bytes:
    return b"".join(struct.pack(">HI", int(x), getattr(s, x.name.lower())) for x in Setting)


def parse_status(payload: bytes) -> status_pb2.Status:
    """Decode a STATUS payload (a google.rpc.Status; empty means OK)."""
    try:
        return status_pb2.Status.FromString(bytes(payload))
    except DecodeError as e:
        raise BadPayload(f"status: {e}") from None


def encode_status(status: status_pb2.Status | None) -> bytes:
    return status.SerializeToString() if status is not None else b""


def parse_goaway(payload: bytes) -> tuple[int, status_pb2.Status]:
    """Decode a GOAWAY payload: (last accepted call id, reason)."""
    if len(payload) < 4:
        raise BadPayload(f"GOAWAY payload of {len(payload)} bytes")
    (last_id,) = struct.unpack_from(">I", payload, 0)
    return last_id, parse_status(payload[4:])


def encode_goaway(last_id: int, reason: status_pb2.Status | None) -> bytes:
    return struct.pack(">I", last_id) + encode_status(reason)
