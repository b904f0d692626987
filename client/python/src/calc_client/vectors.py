"""Checks testdata/wire/vectors.json with this package's frame decoder.

Each vector is decoded as its "about" says: a preface vector with
:func:`calc_client.wire.read_preface`; any other as a byte stream of frames
with :class:`calc_client.wire.FrameDecoder` under the vector's limits,
expecting exactly ``frames`` and then end of input, or ``error`` right after
the listed frames. Each frame's header, request header, settings, status,
goaway, ping payload and message are compared by value (messages are parsed
from their protobuf JSON, never compared as re-encoded bytes). The ``server``
field is informational and not used.

Every vector is decoded twice: from one buffer, and fed one byte at a time
(the way bytes trickle in from a socket); both must give the same answer.
"""
from __future__ import annotations

from google.protobuf import json_format, text_format
from google.protobuf.message import DecodeError

from . import wire
from .service import METHODS, METHODS_BY_FULL_NAME

MESSAGE_TYPES = {
    cls.DESCRIPTOR.full_name: cls
    for m in METHODS.values()
    for cls in (m.request_type, m.response_type)
}


def check_vector(v: dict) -> str | None:
    """Return None if the vector decodes as expected, else why not."""
    raw = bytes.fromhex(v["hex"])
    if v.get("preface"):
        return _check_preface(v, raw)
    for chunk in (len(raw) or 1, 1):
        why = _check_frames(v, raw, chunk)
        if why is not None:
            return why if chunk != 1 else f"{why} (fed one byte at a time)"
    return None


def _check_preface(v: dict, raw: bytes) -> str | None:
    want_error = v.get("error")
    try:
        version = wire.read_preface(raw)
    except wire.WireError as e:
        if e.name == want_error:
            return None
        return f"read_preface failed with {e.name} ({e}); want {want_error or 'version %s' % v.get('version')}"
    if want_error:
        return f"read_preface gave version {version}; want error {want_error}"
    if version != v.get("version"):
        return f"preface version {version}; want {v.get('version')}"
    return None


def _check_frames(v: dict, raw: bytes, chunk: int) -> str | None:
    limits = v.get("limits") or {}
    max_frame = limits.get("max_frame_size", wire.DEFAULT_MAX_FRAME_SIZE)
    max_message = limits.get("max_message_size", wire.DEFAULT_MAX_MESSAGE_SIZE)
    want_frames = v.get("frames") or []
    want_error = v.get("error")
    dec = wire.FrameDecoder(max_frame)
    bound: dict[int, str] = {}
    got = 0
    offset = 0
    while True:
        try:
            frame = dec.next_frame()
            while frame is None and offset < len(raw):
                dec.feed(raw[offset : offset + chunk])
                offset += chunk
                frame = dec.next_frame()
            if frame is None:
                dec.finish()
        except wire.WireError as e:
            if want_error and got == len(want_frames) and e.name == want_error:
                return None
            return (f"after {got} frame(s): decode error {e.name} ({e}); "
                    f"want {len(want_frames)} frame(s) then {want_error or 'end of input'}")
        if frame is None:
            if want_error:
                return f"end of input after {got} frame(s); want error {want_error}"
            if got != len(want_frames):
                return f"{got} frame(s); want {len(want_frames)}"
            return None
        if got >= len(want_frames):
            return f"more than {len(want_frames)} frame(s): extra {frame.kind_name}"
        why = check_frame(want_frames[got], frame, max_message, bound)
        if why is not None:
            return f"frame {got} ({want_frames[got].get('kind')}): {why}"
        got += 1


def _one_line(m) -> str:
    return "{" + text_format.MessageToString(m, as_one_line=True) + "}"


def _check_status(st, want: dict | None) -> str | None:
    want = want or {}
    types = [d.type_url for d in st.details]
    if (st.code, st.message, types) != (want.get("code", 0), want.get("message", ""), want.get("detail_types", [])):
        return f"status code={st.code} message={st.message!r} details={types}; want {want}"
    return None


def check_frame(want: dict, f: wire.Frame, max_message: int, bound: dict[int, str]) -> str | None:
    """Compare one decoded frame with its expected meaning."""
    if (f.kind_name, f.flags, f.id) != (want.get("kind"), want.get("flags", 0), want.get("id", 0)):
        return f"frame {f.kind_name} flags {f.flags} id {f.id}; want {want.get('kind')} {want.get('flags')} {want.get('id')}"
    msg_bytes = f.payload
    msg_type = ""
    kind = f.kind
    if kind == wire.Kind.REQUEST:
        try:
            h, msg_bytes = wire.parse_request_header(f.flags, f.payload)
        except wire.WireError as e:
            return f"request header: {e.name} {e}"
        if h.method_name:
            bound[h.method_ref] = h.method_name
        if (h.method_ref, h.method_name) != (want.get("method_ref"), want.get("method_name")):
            return f"method {h.method_ref} {h.method_name!r}; want {want.get('method_ref')} {want.get('method_name')!r}"
        if h.timeout_us != want.get("timeout_us"):
            return f"timeout_us {h.timeout_us}; want {want.get('timeout_us')}"
        want_md = [(k, val.encode("utf-8")) for k, val in want.get("metadata") or []]
        if h.metadata != want_md:
            return f"metadata {h.metadata}; want {want_md}"
        method = METHODS_BY_FULL_NAME.get(bound.get(h.method_ref, ""))
        if method is not None and not method.client_streaming:
            msg_type = method.request_type.DESCRIPTOR.full_name
    elif kind in (wire.Kind.MESSAGE, wire.Kind.RESPONSE):
        msg_type = want.get("message_type", "")  # a real peer knows the type from the call's direction
    elif kind == wire.Kind.STATUS:
        try:
            st = wire.parse_status(f.payload)
        except wire.WireError as e:
            return str(e)
        return _check_status(st, want.get("status"))
    elif kind == wire.Kind.GOAWAY:
        try:
            last_id, st = wire.parse_goaway(f.payload)
        except wire.WireError as e:
            return str(e)
        if last_id != want.get("last_id"):
            return f"last id {last_id}; want {want.get('last_id')}"
        return _check_status(st, want.get("status"))
    elif kind == wire.Kind.SETTINGS:
        try:
            got = wire.parse_settings(f.payload).as_dict()
        except wire.WireError as e:
            return str(e)
        want_settings = want.get("settings") or {}
        unknown = set(want_settings) - set(got)
        if unknown:
            return f"unknown settings {sorted(unknown)}"
        if any(got[k] != val for k, val in want_settings.items()):
            return f"settings {got}; want {want_settings}"
        return None
    elif kind in (wire.Kind.PING, wire.Kind.PONG):
        if f.payload.hex() != want.get("ping_hex", ""):
            return f"payload {f.payload.hex()}; want {want.get('ping_hex')}"
        return None
    else:  # HALF_CLOSE, CANCEL
        if f.payload:
            return f"payload {f.payload.hex()}; want empty"
        return None

    if msg_type != want.get("message_type", ""):
        return f"message type {msg_type!r}; want {want.get('message_type', '')!r}"
    want_error = want.get("message_error")
    try:
        msg = wire.decode_message(msg_bytes, f.flags, max_message)
    except wire.WireError as e:
        if e.name == want_error:
            return None
        return f"message error {e.name} ({e}); want {want_error or 'a message'}"
    if not msg_type:
        if msg or want_error:
            return f"message {msg.hex()!r} on a call without a request message; want error {want_error}"
        return None
    cls = MESSAGE_TYPES.get(msg_type)
    if cls is None:
        return f"unknown message type {msg_type}"
    try:
        got_msg = cls.FromString(msg)
    except DecodeError as e:
        if want_error == "INVALID_PROTOBUF":
            return None
        return f"protobuf decode failed ({e}); want {want_error or 'a message'}"
    if want_error:
        return f"message decoded as {_one_line(got_msg)}; want error {want_error}"
    try:
        want_msg = json_format.ParseDict(want.get("message") or {}, cls())
    except json_format.ParseError as e:
        return f"the vector's message does not parse as {msg_type}: {e}"
    if got_msg != want_msg:
        return f"message {_one_line(got_msg)}; want {_one_line(want_msg)}"
    return None
