-- calc.lua: a Wireshark dissector for calc's raw TCP protocol, version 1
-- (PROTOCOL.md at the root of the calc repository).
--
-- It finds calc on TCP port 4000 (preference calc.tcp_port) and, on any
-- port, by the client preface "CALC" at the start of a TCP stream. It
-- reassembles frames across segments, shows every header field, decodes
-- snappy-compressed messages (a pure Lua snappy block decoder) and hands each
-- message to Wireshark's protobuf dissector with the message type of its
-- method and direction. Set the protobuf search paths to calc's proto/
-- directory and to tools/wireshark/proto (google.rpc.Status); see
-- tools/wireshark/README.md.
--
-- Wireshark 4.0 and later. Lua 5.2 has no bitwise operators and Lua 5.4 has
-- no bit32 library, so this file uses arithmetic only.
--
-- Malformed input is reported as expert info (group Malformed, severity
-- Error), never as a Lua error: every frame is dissected under pcall.

local calc = Proto("calc", "calc RPC raw TCP protocol")

local MAGIC = "CALC"
local HEADER_SIZE = 6 -- kind, flags, call id: what the length counts besides the payload
local MAX_PING_PAYLOAD = 64
local MAX_METHOD_REF = 65535
local MAX_METHOD_NAME = 512
local SNAPPY_MAX_RATIO = 22 -- a block may not claim more than 22 times its size

calc.prefs.tcp_port = Pref.uint("TCP port", 4000, "The TCP port calc's raw TCP protocol is decoded on " ..
  "(other ports are found by the client preface)")
calc.prefs.max_frame_size = Pref.uint("Max frame size", 4210688,
  "Largest frame length accepted; a larger length prefix ends the stream (FRAME_TOO_LARGE)")
calc.prefs.max_message_size = Pref.uint("Max message size", 4194304,
  "Largest decoded message; a snappy block claiming more is not decoded (MESSAGE_TOO_LARGE)")

-- Names ----------------------------------------------------------------------

local KIND = {
  [0x01] = "SETTINGS", [0x02] = "REQUEST", [0x03] = "MESSAGE", [0x04] = "HALF_CLOSE", [0x05] = "RESPONSE",
  [0x06] = "STATUS", [0x07] = "CANCEL", [0x08] = "PING", [0x09] = "PONG", [0x0A] = "GOAWAY",
}
local K = {}
for v, name in pairs(KIND) do K[name] = v end

local SERVER_ONLY = { [K.SETTINGS] = true, [K.RESPONSE] = true, [K.STATUS] = true, [K.GOAWAY] = true }
local CLIENT_ONLY = { [K.REQUEST] = true, [K.HALF_CLOSE] = true, [K.CANCEL] = true }
local CONNECTION_FRAME = { [K.SETTINGS] = true, [K.PING] = true, [K.PONG] = true, [K.GOAWAY] = true }

local FLAG_COMPRESSED, FLAG_METHOD_NAME, FLAG_DEADLINE, FLAG_METADATA = 0x01, 0x02, 0x04, 0x08

local SETTING = {
  [1] = "MAX_FRAME_SIZE", [2] = "MAX_MESSAGE_SIZE", [3] = "COMPRESS_THRESHOLD", [4] = "MAX_CONCURRENT_CALLS",
  [5] = "IDLE_TIMEOUT_MILLIS",
}

local CODE = {
  [0] = "OK", [1] = "CANCELLED", [2] = "UNKNOWN", [3] = "INVALID_ARGUMENT", [4] = "DEADLINE_EXCEEDED",
  [5] = "NOT_FOUND", [6] = "ALREADY_EXISTS", [7] = "PERMISSION_DENIED", [8] = "RESOURCE_EXHAUSTED",
  [9] = "FAILED_PRECONDITION", [10] = "ABORTED", [11] = "OUT_OF_RANGE", [12] = "UNIMPLEMENTED",
  [13] = "INTERNAL", [14] = "UNAVAILABLE", [15] = "DATA_LOSS", [16] = "UNAUTHENTICATED",
}

-- The request and response message types of calc's methods. A method not
-- listed here is still decoded: the protobuf dissector looks its types up in
-- the loaded .proto files by the method's name.
local METHOD_TYPES = {
  ["/calculator.v1.CalculatorService/Calculate"] = { "calculator.v1.CalculateRequest", "calculator.v1.CalculateResponse" },
  ["/calculator.v1.CalculatorService/Evaluate"] = { "calculator.v1.EvaluateRequest", "calculator.v1.EvaluateResponse" },
  ["/calculator.v1.CalculatorService/CalculateStream"] = {
    "calculator.v1.CalculateStreamRequest", "calculator.v1.CalculateStreamResponse" },
}
local STATUS_TYPE = "google.rpc.Status"

-- Fields ---------------------------------------------------------------------

local F = {
  preface = ProtoField.none("calc.preface", "Preface"),
  preface_magic = ProtoField.string("calc.preface.magic", "Magic"),
  preface_version = ProtoField.uint8("calc.preface.version", "Version", base.DEC),

  direction = ProtoField.string("calc.direction", "Direction"),
  length = ProtoField.uint32("calc.length", "Length", base.DEC),
  kind = ProtoField.uint8("calc.kind", "Kind", base.HEX, KIND),
  flags = ProtoField.uint8("calc.flags", "Flags", base.HEX),
  flag_compressed = ProtoField.bool("calc.flags.compressed", "COMPRESSED", 8, nil, FLAG_COMPRESSED,
    "The message is one snappy block"),
  flag_method_name = ProtoField.bool("calc.flags.method_name", "METHOD_NAME", 8, nil, FLAG_METHOD_NAME,
    "The request header binds a method ref to a method name"),
  flag_deadline = ProtoField.bool("calc.flags.deadline", "DEADLINE", 8, nil, FLAG_DEADLINE,
    "The request header carries a deadline budget"),
  flag_metadata = ProtoField.bool("calc.flags.metadata", "METADATA", 8, nil, FLAG_METADATA,
    "The request header carries metadata"),
  flag_reserved = ProtoField.uint8("calc.flags.reserved", "Reserved", base.HEX, nil, 0xF0),
  id = ProtoField.uint32("calc.id", "Call id", base.DEC),

  method_ref = ProtoField.uint32("calc.method_ref", "Method ref", base.DEC),
  method_name = ProtoField.string("calc.method_name", "Method name"),
  method = ProtoField.string("calc.method", "Method", base.ASCII, "The call's method, from its REQUEST"),
  request_in = ProtoField.framenum("calc.request_in", "Request in", base.NONE, frametype.REQUEST),
  deadline = ProtoField.uint64("calc.deadline_us", "Deadline budget (microseconds)", base.DEC),
  metadata_count = ProtoField.uint32("calc.metadata.count", "Metadata pairs", base.DEC),
  metadata = ProtoField.string("calc.metadata", "Metadata"),
  metadata_key = ProtoField.string("calc.metadata.key", "Key"),
  metadata_value = ProtoField.string("calc.metadata.value", "Value"),
  metadata_value_bin = ProtoField.bytes("calc.metadata.value_bin", "Value (binary)"),

  message = ProtoField.bytes("calc.message", "Message"),
  message_type = ProtoField.string("calc.message_type", "Message type"),
  snappy_length = ProtoField.uint32("calc.snappy.decoded_length", "Snappy decoded length", base.DEC),

  setting = ProtoField.string("calc.setting", "Setting"),
  setting_id = ProtoField.uint16("calc.setting.id", "Id", base.DEC, SETTING),
  setting_value = ProtoField.uint32("calc.setting.value", "Value", base.DEC),

  goaway_last_id = ProtoField.uint32("calc.goaway.last_id", "Last accepted call id", base.DEC),
  status_code = ProtoField.int32("calc.status.code", "Status code", base.DEC, CODE),
  status_message = ProtoField.string("calc.status.message", "Status message"),
  ping_payload = ProtoField.bytes("calc.ping.payload", "Payload"),
  undecoded = ProtoField.bytes("calc.undecoded", "Undecodable bytes"),
}
-- One field per known setting, calc.setting.max_frame_size and so on, to
-- filter on a setting by its name.
local F_SETTING = {}
for sid, name in pairs(SETTING) do
  F_SETTING[sid] = ProtoField.uint32("calc.setting." .. name:lower(), name, base.DEC)
  F["setting_" .. name:lower()] = F_SETTING[sid]
end
local field_list = {}
for _, f in pairs(F) do field_list[#field_list + 1] = f end
calc.fields = field_list

local function malformed(abbr, text)
  return ProtoExpert.new("calc." .. abbr, text, expert.group.MALFORMED, expert.severity.ERROR)
end

local E = {
  bad_magic = malformed("bad_magic", "Not a calc connection preface (BAD_MAGIC)"),
  too_small = malformed("frame_too_small", "Frame length below the 6-byte frame header (FRAME_TOO_SMALL)"),
  too_large = malformed("frame_too_large", "Frame length above the max frame size (FRAME_TOO_LARGE)"),
  unknown_kind = malformed("unknown_kind", "Unknown frame kind (UNKNOWN_KIND)"),
  bad_header = malformed("bad_header", "Malformed request header"),
  bad_payload = malformed("bad_payload", "Malformed control frame payload"),
  corrupt_snappy = malformed("corrupt_snappy", "Corrupt snappy block (CORRUPT_MESSAGE)"),
  snappy_too_large = malformed("snappy_too_large", "Snappy decoded length too large (MESSAGE_TOO_LARGE)"),
  after_error = malformed("after_error", "Bytes after a framing error: frame boundaries are lost"),
  internal = malformed("dissector_error", "calc dissector error"),
  bad_version = ProtoExpert.new("calc.unsupported_version", "Unsupported protocol version",
    expert.group.PROTOCOL, expert.severity.WARN),
  wrong_direction = ProtoExpert.new("calc.wrong_direction", "Frame kind sent in the wrong direction",
    expert.group.PROTOCOL, expert.severity.WARN),
  nonzero_id = ProtoExpert.new("calc.connection_frame_id", "Connection frame with a non-zero id",
    expert.group.PROTOCOL, expert.severity.WARN),
  rebind = ProtoExpert.new("calc.method_rebound", "Method ref bound again to another name",
    expert.group.PROTOCOL, expert.severity.WARN),
  unknown_method = ProtoExpert.new("calc.unknown_method", "The call's method is unknown: its REQUEST or the " ..
    "binding of its method ref is not in the capture", expert.group.SEQUENCE, expert.severity.NOTE),
  error_status = ProtoExpert.new("calc.error_status", "Call ended with a non-OK status",
    expert.group.RESPONSE_CODE, expert.severity.NOTE),
}
local expert_list = {}
for _, e in pairs(E) do expert_list[#expert_list + 1] = e end
calc.experts = expert_list

local protobuf = Dissector.get("protobuf")
local f_tcp_seq = Field.new("tcp.seq")

-- ParseError is raised (as a table) by the parsers below and turned into
-- expert info; anything else raised is a bug, shown as a dissector error.
local function fail(expert_field, text) error({ expert = expert_field, text = text }, 0) end

-- Bytes ----------------------------------------------------------------------

local function u16(s, i) return s:byte(i) * 256 + s:byte(i + 1) end
local function u32(s, i) return ((s:byte(i) * 256 + s:byte(i + 1)) * 256 + s:byte(i + 2)) * 256 + s:byte(i + 3) end

-- uvarint decodes the protobuf varint at 1-based index i of s, not past
-- index last, and returns its value (exact up to 2^53) and the index after
-- it, or raises a parse error naming what.
local tointeger = math.tointeger or function(x) return x end

local function uvarint(s, i, last, what, expert_field)
  local v, mul = 0, 1.0 -- float: 128^9 overflows Lua 5.3+ integers
  for n = 0, 9 do
    if i + n > last then fail(expert_field, what .. ": varint runs past the end") end
    local b = s:byte(i + n)
    v = v + (b % 128) * mul
    if b < 128 then
      if n == 9 and b > 1 then fail(expert_field, what .. ": varint overflows 64 bits") end
      return tointeger(v) or v, i + n + 1
    end
    mul = mul * 128
  end
  fail(expert_field, what .. ": varint longer than 10 bytes")
end

-- Snappy block format -----------------------------------------------------------

local unpack = table.unpack or unpack

-- snappy_decoded_length returns the uvarint at the start of a snappy block
-- and the index of the first element after it.
local function snappy_decoded_length(s)
  local v, mul = 0, 1
  for i = 1, 5 do
    local b = s:byte(i)
    if not b then fail(E.corrupt_snappy, "snappy: truncated decoded length") end
    v = v + (b % 128) * mul
    if b < 128 then
      if v > 4294967295 then fail(E.corrupt_snappy, "snappy: decoded length over 32 bits") end
      return v, i + 1
    end
    mul = mul * 128
  end
  fail(E.corrupt_snappy, "snappy: decoded length varint too long")
end

-- snappy_decode decodes the snappy block s (a Lua string) whose elements start
-- at index pos and whose decoded length is want: literals, and copies with 1-,
-- 2- and 4-byte offsets into the bytes already decoded.
local function snappy_decode(s, pos, want)
  local n = #s
  local out = {}
  local o = 0 -- bytes decoded
  while pos <= n do
    local tag = s:byte(pos)
    pos = pos + 1
    local t = tag % 4
    if t == 0 then
      local len = math.floor(tag / 4)
      if len >= 60 then
        local nb = len - 59
        if pos + nb - 1 > n then fail(E.corrupt_snappy, "snappy: truncated literal length") end
        len = 0
        for k = nb - 1, 0, -1 do len = len * 256 + s:byte(pos + k) end
        pos = pos + nb
      end
      len = len + 1
      if pos + len - 1 > n then fail(E.corrupt_snappy, "snappy: literal runs past the block") end
      if o + len > want then fail(E.corrupt_snappy, "snappy: literal past the decoded length") end
      for k = 0, len - 1 do out[o + k + 1] = s:byte(pos + k) end
      pos = pos + len
      o = o + len
    else
      local len, off
      if t == 1 then
        if pos > n then fail(E.corrupt_snappy, "snappy: truncated copy") end
        len = 4 + math.floor(tag / 4) % 8
        off = math.floor(tag / 32) * 256 + s:byte(pos)
        pos = pos + 1
      elseif t == 2 then
        if pos + 1 > n then fail(E.corrupt_snappy, "snappy: truncated copy") end
        len = 1 + math.floor(tag / 4)
        off = s:byte(pos) + s:byte(pos + 1) * 256
        pos = pos + 2
      else
        if pos + 3 > n then fail(E.corrupt_snappy, "snappy: truncated copy") end
        len = 1 + math.floor(tag / 4)
        off = s:byte(pos) + s:byte(pos + 1) * 256 + s:byte(pos + 2) * 65536 + s:byte(pos + 3) * 16777216
        pos = pos + 4
      end
      if off == 0 or off > o then fail(E.corrupt_snappy, "snappy: copy offset " .. off .. " outside the output") end
      if o + len > want then fail(E.corrupt_snappy, "snappy: copy past the decoded length") end
      for k = o + 1, o + len do out[k] = out[k - off] end -- byte by byte: copies may overlap
      o = o + len
    end
  end
  if o ~= want then
    fail(E.corrupt_snappy, string.format("snappy: decoded %d bytes, the block claims %d", o, want))
  end
  local parts = {}
  for k = 1, o, 4096 do parts[#parts + 1] = string.char(unpack(out, k, math.min(k + 4095, o))) end
  return table.concat(parts)
end

-- Protobuf scan of google.rpc.Status ---------------------------------------

-- status_summary returns the code and message of the google.rpc.Status in s,
-- or nil if s does not parse; the protobuf dissector shows the full message.
local function status_summary(s)
  local ok, code, msg = pcall(function()
    local i, n, code, msg = 1, #s, 0, ""
    while i <= n do
      local tag
      tag, i = uvarint(s, i, n, "tag", E.bad_payload)
      local field, wt = math.floor(tag / 8), tag % 8
      if wt == 0 then
        local v
        v, i = uvarint(s, i, n, "value", E.bad_payload)
        if field == 1 then code = v >= 2147483648 and v - 18446744073709551616 or v end
      elseif wt == 2 then
        local l
        l, i = uvarint(s, i, n, "length", E.bad_payload)
        if i + l - 1 > n then error("past the end") end
        if field == 2 then msg = s:sub(i, i + l - 1) end
        i = i + l
      elseif wt == 1 then i = i + 8
      elseif wt == 5 then i = i + 4
      else error("wire type") end
    end
    if i ~= n + 1 then error("past the end") end
    return code, msg
  end)
  if ok then return code, msg end
end

-- Conversation state ---------------------------------------------------------

-- convs holds per TCP stream: the server's address and port, the method refs
-- bound so far and the calls seen (id -> method, request frame), as of the
-- first pass. records holds per frame and per PDU in it what the first pass
-- worked out from that state, so later passes show the same.
local convs, records = {}, {}
local cur_frame, pdu_index, summaries = nil, 0, {}

function calc.init()
  convs, records = {}, {}
  cur_frame, pdu_index, summaries = nil, 0, {}
end

-- conv_key names a TCP connection by its two endpoints. (Field tcp.stream
-- is not extracted in a first pass without a tree, tshark -2's first pass.)
local function conv_key(pinfo)
  local a = tostring(pinfo.src) .. "/" .. pinfo.src_port
  local b = tostring(pinfo.dst) .. "/" .. pinfo.dst_port
  if a > b then a, b = b, a end
  return a .. " " .. b
end

local function conversation(pinfo)
  local key = conv_key(pinfo)
  local conv = convs[key]
  if not conv then
    conv = { refs = {}, calls = {}, broken = {}, started = {} }
    local port = calc.prefs.tcp_port
    if pinfo.src_port == port and pinfo.dst_port ~= port then
      conv.server_addr, conv.server_port = tostring(pinfo.src), pinfo.src_port
    elseif pinfo.dst_port == port or pinfo.src_port > pinfo.dst_port then
      conv.server_addr, conv.server_port = tostring(pinfo.dst), pinfo.dst_port
    else
      conv.server_addr, conv.server_port = tostring(pinfo.src), pinfo.src_port
    end
    convs[key] = conv
  end
  return conv
end

local function from_client(conv, pinfo)
  return not (pinfo.src_port == conv.server_port and tostring(pinfo.src) == conv.server_addr)
end

-- Frames -----------------------------------------------------------------------

local function add_message(pinfo, tree, tvb, s, first, last, flags, pb_type, tree_item)
  -- first..last: 1-based indexes of the message bytes in s and in tvb.
  local len = last - first + 1
  if len <= 0 then
    if pb_type then tree:add(F.message_type, pb_type):append_text(" (empty message)"):set_generated() end
    return
  end
  local range = tvb(first - 1, len)
  local item = tree:add(F.message, range)
  local msg_tvb = range:tvb()
  if flags % 2 == 1 then
    local block = s:sub(first, last)
    local ok, err = pcall(function()
      local want, pos = snappy_decoded_length(block)
      item:add(F.snappy_length, range(0, pos - 1), want)
      if want > calc.prefs.max_message_size then
        fail(E.snappy_too_large, string.format("snappy: decoded length %d over the max message size %d",
          want, calc.prefs.max_message_size))
      end
      if want > len * SNAPPY_MAX_RATIO then
        fail(E.snappy_too_large, string.format("snappy: %d bytes claim %d decoded, over %d times the block",
          len, want, SNAPPY_MAX_RATIO))
      end
      local decoded = snappy_decode(block, pos, want)
      if #decoded == 0 then
        msg_tvb = nil
      else
        msg_tvb = ByteArray.new(decoded, true):tvb("snappy decoded")
      end
    end)
    if not ok then
      if type(err) == "table" then
        item:add_proto_expert_info(err.expert, err.text)
      else
        item:add_proto_expert_info(E.internal, "snappy: " .. tostring(err))
      end
      return
    end
    if not msg_tvb then
      item:append_text(" (empty after decoding)")
      return
    end
  end
  if pb_type then
    tree:add(F.message_type, range, pb_type):set_generated()
    if pb_type:sub(1, 1) == "/" then
      pinfo.private["pb_msg_type"] = "application/grpc," .. pb_type
    else
      pinfo.private["pb_msg_type"] = "message," .. pb_type
    end
  else
    pinfo.private["pb_msg_type"] = nil
  end
  protobuf:call(msg_tvb, pinfo, tree)
end

-- message_type returns the protobuf type of a message of method sent by the
-- client (request) or the server: a full type name, or, for a method calc's
-- table does not list, "/service/method,request" for the protobuf dissector to
-- resolve.
local function message_type(method, request)
  if not method then return nil end
  local types = METHOD_TYPES[method]
  if types then return request and types[1] or types[2] end
  return method .. (request and ",request" or ",response")
end

local function parse_request_header(tree, tvb, s, flags, rec)
  local n = #s
  local i = 11 -- payload starts after length, kind, flags, id
  local ref, j = uvarint(s, i, n, "method ref", E.bad_header)
  if ref == 0 or ref > MAX_METHOD_REF then fail(E.bad_header, "method ref " .. ref .. " outside 1 to 65535") end
  tree:add(F.method_ref, tvb(i - 1, j - i), ref)
  rec.ref = ref
  i = j
  if flags % 4 >= FLAG_METHOD_NAME then
    local l
    l, j = uvarint(s, i, n, "method name length", E.bad_header)
    if l == 0 then fail(E.bad_header, "empty method name") end
    if l > MAX_METHOD_NAME then fail(E.bad_header, "method name of " .. l .. " bytes, over " .. MAX_METHOD_NAME) end
    if j + l - 1 > n then fail(E.bad_header, "method name runs past the payload") end
    tree:add(F.method_name, tvb(i - 1, j - i + l), s:sub(j, j + l - 1))
    rec.name = s:sub(j, j + l - 1)
    i = j + l
  end
  if flags % 8 >= FLAG_DEADLINE then
    local us
    us, j = uvarint(s, i, n, "deadline", E.bad_header)
    tree:add(F.deadline, tvb(i - 1, j - i), UInt64.new(us % 4294967296, math.floor(us / 4294967296)))
      :append_text(string.format(" (%.3f ms)", us / 1000))
    i = j
  end
  if flags % 16 >= FLAG_METADATA then
    local count
    count, j = uvarint(s, i, n, "metadata count", E.bad_header)
    local mtree = tree:add(F.metadata_count, tvb(i - 1, j - i), count)
    i = j
    for _ = 1, count do
      local start = i
      local kl, vl, ks, vs
      kl, j = uvarint(s, i, n, "metadata key length", E.bad_header)
      if j + kl - 1 > n then fail(E.bad_header, "metadata key runs past the payload") end
      ks = j
      i = j + kl
      vl, j = uvarint(s, i, n, "metadata value length", E.bad_header)
      if j + vl - 1 > n then fail(E.bad_header, "metadata value runs past the payload") end
      vs = j
      i = j + vl
      local key = s:sub(ks, ks + kl - 1)
      local pair = mtree:add(F.metadata, tvb(start - 1, i - start), key)
      pair:add(F.metadata_key, tvb(ks - 1, kl), key)
      if key:sub(-4) == "-bin" then
        if vl > 0 then pair:add(F.metadata_value_bin, tvb(vs - 1, vl)) end
      else
        pair:add(F.metadata_value, tvb(vs - 1, vl), s:sub(vs, vs + vl - 1))
        pair:append_text(": " .. s:sub(vs, vs + vl - 1))
      end
    end
  end
  return i
end

-- record returns what the first pass worked out for this PDU (a new record
-- in the first pass, the stored one after it).
local function record(pinfo)
  local per_frame = records[pinfo.number]
  if not per_frame then
    per_frame = {}
    records[pinfo.number] = per_frame
  end
  local rec = per_frame[pdu_index]
  if not rec then
    rec = { first = true }
    per_frame[pdu_index] = rec
  else
    rec.first = false
  end
  return rec
end

local function dissect_frame(tvb, pinfo, tree, conv, client, rec)
  local s = tvb:raw()
  local n = #s
  local dir = client and "client → server" or "server → client"

  if n >= 4 and s:sub(1, 4) == MAGIC and client then
    local t = tree:add(calc, tvb(), "calc preface")
    t:add(F.direction, dir):set_generated()
    local p = t:add(F.preface, tvb())
    p:add(F.preface_magic, tvb(0, 4))
    if n >= 5 then
      p:add(F.preface_version, tvb(4, 1))
      if s:byte(5) ~= 1 then
        p:add_proto_expert_info(E.bad_version, "protocol version " .. s:byte(5) .. " (calcd speaks 1)")
      end
      return "PREFACE v" .. s:byte(5)
    end
    return "PREFACE"
  end

  local length = u32(s, 1)
  local t = tree:add(calc, tvb())
  t:add(F.direction, dir):set_generated()
  local len_item = t:add(F.length, tvb(0, 4))

  if rec.after_error then
    t:add(F.undecoded, tvb())
    t:add_proto_expert_info(E.after_error)
    t:append_text(", undecodable")
    return "undecodable bytes after a framing error"
  end
  if length > calc.prefs.max_frame_size then
    t:add(F.undecoded, tvb())
    if rec.bad_magic then
      local kind = s:byte(1) == 0x16 and "a TLS handshake" or "an HTTP request"
      len_item:add_proto_expert_info(E.bad_magic, "the stream starts with " .. kind .. ", not the preface CALC")
      t:append_text(", not calc")
      return "not a calc preface: " .. kind
    end
    len_item:add_proto_expert_info(E.too_large, string.format("length %d above the max frame size %d",
      length, calc.prefs.max_frame_size))
    return "frame too large"
  end
  if length < HEADER_SIZE then
    if n > 4 then t:add(F.undecoded, tvb(4)) end
    len_item:add_proto_expert_info(E.too_small, "length " .. length .. " below the 6-byte header")
    return "frame too small"
  end

  local kind, flags, id = s:byte(5), s:byte(6), u32(s, 7)
  local kind_item = t:add(F.kind, tvb(4, 1))
  local fl = t:add(F.flags, tvb(5, 1))
  fl:add(F.flag_compressed, tvb(5, 1))
  fl:add(F.flag_method_name, tvb(5, 1))
  fl:add(F.flag_deadline, tvb(5, 1))
  fl:add(F.flag_metadata, tvb(5, 1))
  fl:add(F.flag_reserved, tvb(5, 1))
  local names = {}
  for _, f in ipairs({ { FLAG_COMPRESSED, "COMPRESSED" }, { FLAG_METHOD_NAME, "METHOD_NAME" },
    { FLAG_DEADLINE, "DEADLINE" }, { FLAG_METADATA, "METADATA" } }) do
    if math.floor(flags / f[1]) % 2 == 1 then names[#names + 1] = f[2] end
  end
  if #names > 0 then fl:append_text(" (" .. table.concat(names, ", ") .. ")") end
  local id_item = t:add(F.id, tvb(6, 4))

  local name = KIND[kind]
  if not name then
    kind_item:add_proto_expert_info(E.unknown_kind, string.format("kind 0x%02X is not defined by protocol v1", kind))
    if n > 10 then t:add(F.undecoded, tvb(10)) end
    t:append_text(string.format(", kind 0x%02X", kind))
    return string.format("unknown kind 0x%02X", kind)
  end
  t:append_text(", " .. name)
  if CONNECTION_FRAME[kind] then
    if id ~= 0 then id_item:add_proto_expert_info(E.nonzero_id, name .. " with id " .. id) end
  else
    t:append_text(", id " .. id)
  end
  if (client and SERVER_ONLY[kind]) or (not client and CLIENT_ONLY[kind]) then
    kind_item:add_proto_expert_info(E.wrong_direction, string.format("%s sent %s", name, dir))
  end

  local summary = name .. (CONNECTION_FRAME[kind] and "" or " id=" .. id)
  local payload_len = n - 10

  if kind == K.SETTINGS then
    if payload_len % 6 ~= 0 then
      t:add_proto_expert_info(E.bad_payload, "SETTINGS payload of " .. payload_len .. " bytes, not a multiple of 6")
    end
    local parts = {}
    for i = 11, n - 5, 6 do
      local sid, v = u16(s, i), u32(s, i + 2)
      local label = SETTING[sid] or ("unknown setting " .. sid)
      local e = t:add(F.setting, tvb(i - 1, 6), label)
      e:append_text(" = " .. v)
      e:add(F.setting_id, tvb(i - 1, 2))
      e:add(F.setting_value, tvb(i + 1, 4))
      if F_SETTING[sid] then e:add(F_SETTING[sid], tvb(i + 1, 4)):set_generated() end
      parts[#parts + 1] = (SETTING[sid] or sid) .. "=" .. v
    end
    return table.concat({ summary, unpack(parts) }, " ")
  end

  if kind == K.PING or kind == K.PONG then
    if payload_len > 0 then t:add(F.ping_payload, tvb(10)) end
    if payload_len > MAX_PING_PAYLOAD then
      t:add_proto_expert_info(E.bad_payload, name .. " payload of " .. payload_len .. " bytes, over 64")
    end
    return summary
  end

  if kind == K.GOAWAY then
    if payload_len < 4 then
      t:add_proto_expert_info(E.bad_payload, "GOAWAY payload of " .. payload_len .. " bytes, under 4")
      return summary
    end
    t:add(F.goaway_last_id, tvb(10, 4))
    summary = summary .. " last_id=" .. u32(s, 11)
    local code, msg = status_summary(s:sub(15))
    if code then
      t:add(F.status_code, tvb(14), code):set_generated()
      if msg ~= "" then t:add(F.status_message, tvb(14), msg):set_generated() end
      summary = summary .. " " .. (CODE[code] or code) .. (msg ~= "" and (": " .. msg) or "")
    end
    add_message(pinfo, t, tvb, s, 15, n, 0, STATUS_TYPE)
    return summary
  end

  -- Call frames: REQUEST, MESSAGE, HALF_CLOSE, RESPONSE, STATUS, CANCEL.
  local msg_start = 11
  if kind == K.REQUEST then
    local ok, res = pcall(parse_request_header, t, tvb, s, flags, rec)
    if not ok then
      if type(res) ~= "table" then error(res, 0) end
      t:add_proto_expert_info(res.expert, res.text)
      if rec.first and id ~= 0 then conv.calls[id] = { frame = pinfo.number } end
      return summary .. " (malformed header: " .. res.text .. ")"
    end
    msg_start = res
    if rec.first then
      local method = conv.refs[rec.ref]
      if rec.name then
        if method and method ~= rec.name then rec.rebound = method end
        conv.refs[rec.ref] = rec.name
        method = rec.name
      end
      rec.method = method
      if id ~= 0 then conv.calls[id] = { method = method, frame = pinfo.number } end
    end
    if rec.rebound then
      t:add_proto_expert_info(E.rebind, "method ref " .. rec.ref .. " was bound to " .. rec.rebound)
    end
  elseif rec.first then
    local call = conv.calls[id]
    if call then rec.method, rec.request_in = call.method, call.frame end
  end

  if rec.method then
    t:add(F.method, rec.method):set_generated()
    summary = summary .. " " .. rec.method:match("[^/]*$")
  elseif kind ~= K.CANCEL and kind ~= K.HALF_CLOSE and not (kind == K.STATUS) then
    t:add_proto_expert_info(E.unknown_method)
  end
  if rec.request_in then t:add(F.request_in, rec.request_in):set_generated() end

  if kind == K.STATUS then
    local code, msg = 0, ""
    if payload_len > 0 then code, msg = status_summary(s:sub(11)) end
    if code then
      t:add(F.status_code, tvb(10), code):set_generated()
      if msg ~= "" then t:add(F.status_message, tvb(10), msg):set_generated() end
      summary = summary .. " " .. (CODE[code] or code) .. (msg ~= "" and (": " .. msg) or "")
      if code ~= 0 then t:add_proto_expert_info(E.error_status, (CODE[code] or code) .. ": " .. msg) end
    end
    add_message(pinfo, t, tvb, s, 11, n, 0, STATUS_TYPE)
    return summary
  end

  if kind == K.HALF_CLOSE or kind == K.CANCEL then
    if payload_len > 0 then t:add(F.undecoded, tvb(10)) end
    return summary
  end

  -- REQUEST, MESSAGE, RESPONSE carry a message.
  local request = kind == K.REQUEST or (kind == K.MESSAGE and client)
  local method = rec.method
  if kind == K.REQUEST and msg_start > n then
    local types = method and METHOD_TYPES[method]
    if method and method:match("Stream$") or (types and types[1]:match("Stream")) then
      return summary -- a streaming REQUEST carries no message
    end
  end
  add_message(pinfo, t, tvb, s, msg_start, n, flags, message_type(method, request))
  return summary
end

-- Reassembly -----------------------------------------------------------------

-- pdu_length is dissect_tcp_pdus's get_len_func: the preface is 5 bytes, a
-- frame 4 + its length; after a framing error the rest of the segment is one
-- undecodable PDU, since the frame boundaries are lost.
local function pdu_length(tvb, pinfo, offset)
  local conv = conversation(pinfo)
  local client = from_client(conv, pinfo)
  local remaining = tvb:len() - offset
  local broken = conv.broken[client]
  if broken and pinfo.number > broken then return remaining end
  if client and tvb(offset, 4):raw() == MAGIC then return 5 end
  local length = tvb(offset, 4):uint()
  if length > calc.prefs.max_frame_size or length < HEADER_SIZE then return remaining end
  return 4 + length
end

local function dissect_pdu(tvb, pinfo, tree)
  pdu_index = pdu_index + 1
  local conv = conversation(pinfo)
  local client = from_client(conv, pinfo)
  local rec = record(pinfo)
  if rec.first then
    local broken = conv.broken[client]
    if broken and pinfo.number > broken then
      rec.after_error = true
    elseif tvb:len() >= 4 and not (client and tvb(0, 4):raw() == MAGIC) then
      local length = tvb(0, 4):uint()
      if length > calc.prefs.max_frame_size or length < HEADER_SIZE then
        conv.broken[client] = pinfo.number
        rec.bad_magic = client and not conv.started[client] and length > calc.prefs.max_frame_size and
          (tvb:raw(0, 4):match("^[A-Z]+ ") ~= nil or tvb:raw(0, 2) == "\22\3")
      end
    end
    conv.started[client] = true
  end
  local ok, result = pcall(dissect_frame, tvb, pinfo, tree, conv, client, rec)
  if not ok then
    local item = tree:add(calc, tvb())
    if type(result) == "table" then
      item:add_proto_expert_info(result.expert, result.text)
      result = "malformed: " .. result.text
    else
      item:add_proto_expert_info(E.internal, tostring(result))
      result = "dissector error"
    end
  end
  summaries[#summaries + 1] = result
  pinfo.cols.protocol = "CALC"
  -- TCP may call calc twice for one segment (the end of a reassembled frame,
  -- then the frames after it) and fences the Info column in between: this
  -- call's text goes after the fence.
  pinfo.cols.info = (pdu_index > #summaries and ", " or "") .. table.concat(summaries, ", ")
  return tvb:len()
end

function calc.dissector(tvb, pinfo, tree)
  if pinfo.number ~= cur_frame then
    cur_frame, pdu_index = pinfo.number, 0
  end
  summaries = {}
  dissect_tcp_pdus(tvb, tree, 4, pdu_length, dissect_pdu, true)
  return tvb:len()
end

-- heuristic claims a TCP stream on any port whose client starts with the
-- preface, and makes calc the dissector of the rest of the conversation.
local function heuristic(tvb, pinfo, tree)
  if tvb:len() < 5 or tvb(0, 4):raw() ~= MAGIC then return false end
  local f_seq = { f_tcp_seq() }
  local seq = f_seq[#f_seq]
  if seq and seq.value ~= 1 then return false end
  local key = conv_key(pinfo)
  if not convs[key] then
    convs[key] = { refs = {}, calls = {}, broken = {}, started = {},
      server_addr = tostring(pinfo.dst), server_port = pinfo.dst_port }
  end
  pinfo.conversation = calc
  calc.dissector(tvb, pinfo, tree)
  return true
end

DissectorTable.get("tcp.port"):add(calc.prefs.tcp_port, calc)
calc:register_heuristic("tcp", heuristic)

local registered_port = calc.prefs.tcp_port
function calc.prefs_changed()
  if registered_port ~= calc.prefs.tcp_port then
    local ports = DissectorTable.get("tcp.port")
    if registered_port ~= 0 then ports:remove(registered_port, calc) end
    registered_port = calc.prefs.tcp_port
    if registered_port ~= 0 then ports:add(registered_port, calc) end
  end
end
