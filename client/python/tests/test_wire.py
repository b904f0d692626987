"""Unit tests of calc_client.wire (no server needed)."""
import copy
import json
from pathlib import Path

import pytest
import snappy

from calc_client import wire
from calc_client.gen.calculator.v1 import calculator_pb2 as pb
from calc_client.vectors import check_vector

ROOT = Path(__file__).resolve().parents[3]
VECTORS = json.loads((ROOT / "testdata/wire/vectors.json").read_text())["vectors"]
CALC = "/calculator.v1.CalculatorService/Calculate"
ADD = pb.CalculateRequest(operator=pb.OPERATOR_ADD, lhs=2, rhs=3).SerializeToString()


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


# --- PROTOCOL.md section 7, byte for byte -------------------------------------------------

def request(call_id, header):
    hdr, flags = wire.encode_request_header(header)
    return wire.encode_frame(wire.Kind.REQUEST, flags, call_id, hdr + ADD)


def test_protocol_examples():
    assert wire.PREFACE == h("43 41 4C 43 01")
    assert wire.encode_frame(wire.Kind.SETTINGS, 0, 0, wire.encode_settings(wire.Settings())) == h(
        "00 00 00 24 01 00 00 00 00 00 00 01 00 40 40 00 00 02 00 40 00 00 00 03 00 00 01 00"
        "00 04 00 00 04 00 00 05 00 04 93 E0")
    assert ADD == h("08 01 10 02 18 03")
    assert request(1, wire.RequestHeader(1, CALC)) == h("00 00 00 38 02 02 00 00 00 01 01 2A") + CALC.encode() + ADD
    assert request(2, wire.RequestHeader(1, timeout_us=250_000)) == h(
        "00 00 00 10 02 04 00 00 00 02 01 90 A1 0F 08 01 10 02 18 03")
    assert request(3, wire.RequestHeader(1)) == h("00 00 00 0D 02 00 00 00 00 03 01 08 01 10 02 18 03")
    assert wire.encode_frame(wire.Kind.RESPONSE, 0, 3, pb.CalculateResponse(result=5).SerializeToString()) == h(
        "00 00 00 08 05 00 00 00 00 03 08 05")
    ping = h("00 00 00 0E 08 00 00 00 00 00 00 00 00 00 00 00 00 2A")
    assert wire.encode_frame(wire.Kind.PING, 0, 0, bytes(7) + b"\x2a") == ping
    assert wire.encode_frame(wire.Kind.CANCEL, 0, 9) == h("00 00 00 06 07 00 00 00 00 09")
    from google.rpc import status_pb2
    assert wire.encode_frame(wire.Kind.GOAWAY, 0, 0, wire.encode_goaway(
        7, status_pb2.Status(message="server shutting down"))) == h(
        "00 00 00 20 0A 00 00 00 00 00 00 00 00 07 12 14") + b"server shutting down"


def test_division_status_example():
    frame = h("00 00 00 21 06 00 00 00 00 04 08 03 12 17") + b"division by zero: 1 / 0"
    dec = wire.FrameDecoder()
    dec.feed(frame)
    f = dec.next_frame()
    st = wire.parse_status(f.payload)
    assert (f.kind, f.id, st.code, st.message) == (wire.Kind.STATUS, 4, 3, "division by zero: 1 / 0")


# --- the shared vectors ------------------------------------------------------------------

@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector(vector):
    assert check_vector(vector) is None


def _mutations():
    """Vectors broken on purpose: the checker must notice each one."""
    by_name = {v["name"]: v for v in VECTORS}
    out = []

    def mut(name, label, fn):
        v = copy.deepcopy(by_name[name])
        fn(v)
        out.append(pytest.param(v, id=f"{name}-{label}"))

    mut("calculate_first_call", "value", lambda v: v["frames"][0]["message"].update(rhs="4"))
    mut("calculate_first_call", "flags", lambda v: v["frames"][0].update(flags=3))
    mut("calculate_first_call", "extra-byte", lambda v: v.update(hex=v["hex"] + "00"))
    mut("calculate_pipelined", "timeout", lambda v: v["frames"][1].update(timeout_us=250001))
    mut("calculate_pipelined", "missing-frame", lambda v: v["frames"].pop())
    mut("calculate_metadata", "metadata", lambda v: v["frames"][0]["metadata"][1].__setitem__(1, "\u0000\u0002"))
    mut("status_division_by_zero", "details", lambda v: v["frames"][0]["status"].update(detail_types=[]))
    mut("evaluate_compressed", "expression", lambda v: v["frames"][0]["message"].update(expression="1 + 1"))
    mut("settings", "value", lambda v: v["frames"][0]["settings"].update(MAX_CONCURRENT_CALLS=1))
    mut("oversize_frame", "limit", lambda v: v.update(limits={"max_frame_size": 65, "max_message_size": 64}))
    mut("length_ffffffff", "error", lambda v: v.update(error="FRAME_TOO_SMALL"))
    mut("truncated", "no-error", lambda v: v.pop("error"))
    mut("snappy_bomb", "limit", lambda v: v.update(limits={"max_message_size": 1 << 31}))
    mut("corrupt_snappy", "error", lambda v: v["frames"][0].update(message_error="INVALID_PROTOBUF"))
    mut("stream_server", "status", lambda v: v["frames"][1].update(status={"code": 1}))
    mut("goaway", "last_id", lambda v: v["frames"][0].update(last_id=8))
    mut("ping_pong_cancel", "ping", lambda v: v["frames"][0].update(ping_hex="00"))
    mut("preface_version_2", "version", lambda v: v.update(version=1))
    mut("bad_magic_tls", "no-error", lambda v: v.pop("error"))
    mut("stream_client", "type", lambda v: v["frames"][1].update(message_type="calculator.v1.CalculateRequest"))
    return out


@pytest.mark.parametrize("vector", _mutations())
def test_vector_checker_catches_mutations(vector):
    assert check_vector(vector) is not None


# --- decoder -------------------------------------------------------------------------------

def test_length_checked_before_payload():
    dec = wire.FrameDecoder(64)
    dec.feed(b"\x00\x00\x00\x41")  # 65: rejected with only the length prefix in
    with pytest.raises(wire.FrameTooLarge):
        dec.next_frame()
    with pytest.raises(wire.FrameTooLarge):  # sticky
        dec.next_frame()


def test_incremental_and_truncated():
    data = wire.encode_frame(wire.Kind.PING, 0, 0, b"12345678") + wire.encode_frame(wire.Kind.CANCEL, 0, 7)
    dec = wire.FrameDecoder()
    got = []
    for i in range(len(data)):
        dec.feed(data[i:i + 1])
        got += dec.frames()
    assert [(f.kind, f.id, f.payload) for f in got] == [(wire.Kind.PING, 0, b"12345678"), (wire.Kind.CANCEL, 7, b"")]
    dec.finish()
    dec.feed(data[:5])
    assert dec.next_frame() is None
    with pytest.raises(wire.Truncated):
        dec.finish()


def test_unknown_kind_after_whole_frame():
    dec = wire.FrameDecoder()
    dec.feed(wire.encode_frame(0x42, 0, 1, b"\x01\x02")[:-1])
    assert dec.next_frame() is None
    dec.feed(b"\x02")
    with pytest.raises(wire.UnknownKind):
        dec.next_frame()


# --- messages --------------------------------------------------------------------------------

def test_compression_threshold():
    at = pb.EvaluateRequest(expression="2 * " * 63 + "2").SerializeToString()
    below = pb.EvaluateRequest(expression=("2 * " * 63)[:252]).SerializeToString()
    assert (len(at), len(below)) == (256, 255)
    enc, flags = wire.encode_message(at)
    assert flags == wire.Flag.COMPRESSED and len(enc) < 256
    assert wire.decode_message(enc, flags) == at
    assert wire.encode_message(below) == (below, 0)
    assert wire.encode_message(at, 0) == (at, 0)  # disabled
    noise = bytes((i * 7919 + 13) * 2654435761 % 256 for i in range(300))
    assert wire.snappy_decoded_len(snappy.compress(noise)) == 300
    enc, flags = wire.encode_message(noise)
    if len(snappy.compress(noise)) >= len(noise):
        assert (enc, flags) == (noise, 0)


def test_decode_message_limits():
    bomb = h("80 80 80 80 04 00 61")
    with pytest.raises(wire.MessageTooLarge):
        wire.decode_message(bomb, wire.Flag.COMPRESSED)
    with pytest.raises(wire.CorruptMessage):
        wire.decode_message(h("0a ff ff ff"), wire.Flag.COMPRESSED)
    with pytest.raises(wire.CorruptMessage):
        wire.decode_message(h("ff ff ff ff ff ff"), wire.Flag.COMPRESSED)  # bad length varint
    with pytest.raises(wire.MessageTooLarge):
        wire.decode_message(b"x" * 11, 0, max_message_size=10)
    ok = snappy.compress(b"a" * 100)
    assert wire.decode_message(ok, wire.Flag.COMPRESSED, max_message_size=100) == b"a" * 100
    with pytest.raises(wire.MessageTooLarge):
        wire.decode_message(ok, wire.Flag.COMPRESSED, max_message_size=99)


def test_uvarint():
    for v in (0, 1, 127, 128, 250_000, 65535, 2**32, 2**64 - 1):
        assert wire.decode_uvarint(wire.encode_uvarint(v)) == (v, len(wire.encode_uvarint(v)))
    with pytest.raises(ValueError):
        wire.decode_uvarint(b"\x80")
    with pytest.raises(ValueError):
        wire.decode_uvarint(b"\xff" * 9 + b"\x02")


def test_request_header_roundtrip_and_errors():
    hdr = wire.RequestHeader(7, CALC, 1234, [("authorization", b"Bearer x"), ("trace-bin", b"\x00\xff")])
    data, flags = wire.encode_request_header(hdr)
    got, rest = wire.parse_request_header(flags, data + b"msg")
    assert (got, rest) == (hdr, b"msg")
    with pytest.raises(wire.BadHeader):
        wire.parse_request_header(0, b"\x00")  # ref 0
    with pytest.raises(wire.BadHeader):
        wire.parse_request_header(wire.Flag.METHOD_NAME, b"\x01\x05ab")  # string past the payload
    with pytest.raises(ValueError):
        wire.validate_metadata([("Bad-Key", "x")])
    with pytest.raises(ValueError):
        wire.validate_metadata([("k", "x" * (8 << 10))])


def test_settings_unknown_ids_ignored():
    payload = wire.encode_settings(wire.Settings(compress_threshold=100)) + b"\x00\x63\x00\x00\x00\x01"
    assert wire.parse_settings(payload).compress_threshold == 100
    with pytest.raises(wire.BadPayload):
        wire.parse_settings(b"\x00\x01\x00")
