#include "calc/wire.h"

#include <snappy.h>

#include <cstdio>
#include <cstring>

namespace calc::wire {

namespace {

constexpr const char* kKindNames[] = {
    nullptr, "SETTINGS", "REQUEST", "MESSAGE", "HALF_CLOSE", "RESPONSE",
    "STATUS", "CANCEL", "PING", "PONG", "GOAWAY",
};

// kMaxTimeoutMicros bounds deadline budgets as calcd does (100 years).
constexpr uint64_t kMaxTimeoutMicros = 100ull * 365 * 24 * 3600 * 1000000;

[[noreturn]] void Fail(ErrorCode code, const std::string& detail) { throw WireError(code, detail); }

uint64_t HeaderUvarint(std::string_view* p, uint64_t limit, const char* what) {
  uint64_t v;
  if (!ReadUvarint(p, &v)) Fail(ErrorCode::kBadHeader, std::string("bad ") + what + " varint");
  if (v > limit) {
    Fail(ErrorCode::kBadHeader,
         std::string(what) + " " + std::to_string(v) + " exceeds " + std::to_string(limit));
  }
  return v;
}

std::string HeaderString(std::string_view* p, size_t limit, const char* what) {
  uint64_t n = HeaderUvarint(p, limit, (std::string(what) + " length").c_str());
  if (p->size() < n) Fail(ErrorCode::kBadHeader, std::string(what) + " runs past the payload");
  std::string s(p->substr(0, n));
  p->remove_prefix(n);
  return s;
}

void AppendString(std::string& dst, std::string_view s) {
  AppendUvarint(dst, s.size());
  dst.append(s);
}

}  // namespace

std::string KindName(uint8_t kind) {
  if (IsKnownKind(kind)) return kKindNames[kind];
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", kind);
  return buf;
}

bool IsKnownKind(uint8_t kind) { return kind >= 0x01 && kind <= 0x0A; }

const char* ErrorName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBadMagic: return "BAD_MAGIC";
    case ErrorCode::kFrameTooLarge: return "FRAME_TOO_LARGE";
    case ErrorCode::kFrameTooSmall: return "FRAME_TOO_SMALL";
    case ErrorCode::kUnknownKind: return "UNKNOWN_KIND";
    case ErrorCode::kTruncated: return "TRUNCATED";
    case ErrorCode::kMessageTooLarge: return "MESSAGE_TOO_LARGE";
    case ErrorCode::kCorruptMessage: return "CORRUPT_MESSAGE";
    case ErrorCode::kBadHeader: return "BAD_HEADER";
    case ErrorCode::kBadPayload: return "BAD_PAYLOAD";
  }
  return "UNKNOWN_ERROR";
}

WireError::WireError(ErrorCode code, const std::string& detail)
    : std::runtime_error(std::string("wire: ") + ErrorName(code) + ": " + detail), code_(code) {}

// ---- preface ----------------------------------------------------------------

void AppendPreface(std::string& dst) {
  dst.append(kMagic);
  dst.push_back(static_cast<char>(kVersion));
}

uint8_t ParsePreface(std::string_view bytes) {
  size_t n = std::min(bytes.size(), kMagic.size());
  if (bytes.substr(0, n) != kMagic.substr(0, n)) Fail(ErrorCode::kBadMagic, "preface does not start with CALC");
  if (bytes.size() < kPrefaceSize) {
    Fail(ErrorCode::kTruncated, "preface of " + std::to_string(bytes.size()) + " bytes");
  }
  return static_cast<uint8_t>(bytes[kMagic.size()]);
}

// ---- frame decoding ---------------------------------------------------------

FrameDecoder::FrameDecoder(uint32_t max_frame_size) : max_frame_(max_frame_size) {}

void FrameDecoder::Feed(const char* data, size_t n) {
  if (start_ > 0 && (start_ == buf_.size() || start_ >= (64u << 10))) {
    buf_.erase(0, start_);  // drop consumed bytes before growing
    start_ = 0;
  }
  buf_.append(data, n);
}

std::optional<Frame> FrameDecoder::Next() {
  if (buffered() < kLengthSize) return std::nullopt;
  const char* p = buf_.data() + start_;
  uint32_t length = ReadU32(p);
  if (length > max_frame_) {
    Fail(ErrorCode::kFrameTooLarge, std::to_string(length) + " > " + std::to_string(max_frame_));
  }
  if (length < kHeaderSize) Fail(ErrorCode::kFrameTooSmall, std::to_string(length));
  if (buffered() - kLengthSize < length) return std::nullopt;
  Frame f;
  f.kind = static_cast<uint8_t>(p[4]);
  f.flags = static_cast<uint8_t>(p[5]);
  f.id = ReadU32(p + 6);
  f.payload.assign(p + kFrameOverhead, length - kHeaderSize);
  start_ += kLengthSize + length;
  if (start_ == buf_.size()) {
    buf_.clear();
    start_ = 0;
  }
  if (!IsKnownKind(f.kind)) Fail(ErrorCode::kUnknownKind, KindName(f.kind));
  return f;
}

void FrameDecoder::Finish() const {
  if (buffered() > 0) {
    Fail(ErrorCode::kTruncated, "stream ended " + std::to_string(buffered()) + " bytes into a frame");
  }
}

// ---- encoding ---------------------------------------------------------------

void AppendUvarint(std::string& dst, uint64_t v) {
  while (v >= 0x80) {
    dst.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  dst.push_back(static_cast<char>(v));
}

bool ReadUvarint(std::string_view* p, uint64_t* v) {
  uint64_t x = 0;
  for (size_t i = 0; i < p->size() && i < 10; i++) {
    uint8_t b = static_cast<uint8_t>((*p)[i]);
    if (i == 9 && b > 1) return false;  // more than 64 bits
    x |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
    if (b < 0x80) {
      *v = x;
      p->remove_prefix(i + 1);
      return true;
    }
  }
  return false;
}

void AppendU32(std::string& dst, uint32_t v) {
  char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
               static_cast<char>(v)};
  dst.append(b, 4);
}

uint32_t ReadU32(const char* p) {
  auto u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | uint32_t{u[3]};
}

void AppendFrame(std::string& dst, Kind kind, uint8_t flags, uint32_t id, std::string_view payload) {
  AppendU32(dst, static_cast<uint32_t>(kHeaderSize + payload.size()));
  dst.push_back(static_cast<char>(kind));
  dst.push_back(static_cast<char>(flags));
  AppendU32(dst, id);
  dst.append(payload);
}

uint8_t AppendRequestHeader(std::string& dst, const RequestHeader& h) {
  uint8_t f = 0;
  AppendUvarint(dst, h.method_ref);
  if (!h.method_name.empty()) {
    f |= flags::kMethodName;
    AppendString(dst, h.method_name);
  }
  if (h.timeout) {
    f |= flags::kDeadline;
    auto us = h.timeout->count();
    AppendUvarint(dst, us < 0 ? 0 : static_cast<uint64_t>(us));
  }
  if (!h.metadata.empty()) {
    f |= flags::kMetadata;
    AppendUvarint(dst, h.metadata.size());
    for (const auto& [k, v] : h.metadata) {
      AppendString(dst, k);
      AppendString(dst, v);
    }
  }
  return f;
}

std::string_view ParseRequestHeader(uint8_t f, std::string_view payload, RequestHeader* h) {
  *h = RequestHeader{};
  std::string_view p = payload;
  uint64_t ref = HeaderUvarint(&p, kMaxMethodRef, "method ref");
  if (ref == 0) Fail(ErrorCode::kBadHeader, "method ref 0");
  h->method_ref = static_cast<uint32_t>(ref);
  if (f & flags::kMethodName) {
    h->method_name = HeaderString(&p, kMaxMethodNameLen, "method name");
    if (h->method_name.empty()) Fail(ErrorCode::kBadHeader, "empty method name");
  }
  if (f & flags::kDeadline) {
    h->timeout = std::chrono::microseconds(HeaderUvarint(&p, kMaxTimeoutMicros, "deadline"));
  }
  if (f & flags::kMetadata) {
    uint64_t n = HeaderUvarint(&p, kMaxMetadataLen / 2, "metadata count");
    size_t budget = kMaxMetadataLen;
    for (uint64_t i = 0; i < n; i++) {
      std::string k = HeaderString(&p, budget, "metadata");
      budget -= k.size();
      std::string v = HeaderString(&p, budget, "metadata");
      budget -= v.size();
      h->metadata.emplace_back(std::move(k), std::move(v));
    }
  }
  return p;
}

uint8_t AppendMessage(std::string& dst, std::string_view msg, uint32_t threshold) {
  if (threshold == 0 || msg.size() < threshold) {
    dst.append(msg);
    return 0;
  }
  size_t start = dst.size();
  dst.resize(start + snappy::MaxCompressedLength(msg.size()));
  size_t n = 0;
  snappy::RawCompress(msg.data(), msg.size(), dst.data() + start, &n);
  if (n >= msg.size()) {
    dst.resize(start);
    dst.append(msg);
    return 0;
  }
  dst.resize(start + n);
  return flags::kCompressed;
}

std::string DecodeMessage(std::string_view payload, uint8_t f, uint32_t max_message_size) {
  if (!(f & flags::kCompressed)) {
    if (payload.size() > max_message_size) {
      Fail(ErrorCode::kMessageTooLarge,
           std::to_string(payload.size()) + " > " + std::to_string(max_message_size) + " bytes");
    }
    return std::string(payload);
  }
  size_t n = 0;
  if (!snappy::GetUncompressedLength(payload.data(), payload.size(), &n)) {
    Fail(ErrorCode::kCorruptMessage, "bad snappy decoded length");
  }
  if (n > max_message_size) {  // checked before anything is allocated or decoded
    Fail(ErrorCode::kMessageTooLarge,
         "decoded length " + std::to_string(n) + " > " + std::to_string(max_message_size) + " bytes");
  }
  std::string out(n, '\0');
  if (!snappy::RawUncompress(payload.data(), payload.size(), out.data())) {
    Fail(ErrorCode::kCorruptMessage, "corrupt snappy block");
  }
  return out;
}

// ---- connection payloads -----------------------------------------------------

void AppendSettings(std::string& dst, const Settings& s) {
  const std::pair<SettingId, uint32_t> entries[] = {
      {SettingId::kMaxFrameSize, s.max_frame_size},
      {SettingId::kMaxMessageSize, s.max_message_size},
      {SettingId::kCompressThreshold, s.compress_threshold},
      {SettingId::kMaxConcurrentCalls, s.max_concurrent_calls},
      {SettingId::kIdleTimeoutMillis, s.idle_timeout_millis},
  };
  for (const auto& [id, v] : entries) {
    auto u = static_cast<uint16_t>(id);
    dst.push_back(static_cast<char>(u >> 8));
    dst.push_back(static_cast<char>(u));
    AppendU32(dst, v);
  }
}

Settings ParseSettings(std::string_view payload) {
  if (payload.size() % 6 != 0) {
    Fail(ErrorCode::kBadPayload, "SETTINGS payload of " + std::to_string(payload.size()) + " bytes");
  }
  Settings s;
  for (size_t i = 0; i < payload.size(); i += 6) {
    auto u = reinterpret_cast<const unsigned char*>(payload.data() + i);
    uint16_t id = static_cast<uint16_t>((u[0] << 8) | u[1]);
    uint32_t v = ReadU32(payload.data() + i + 2);
    switch (static_cast<SettingId>(id)) {
      case SettingId::kMaxFrameSize: s.max_frame_size = v; break;
      case SettingId::kMaxMessageSize: s.max_message_size = v; break;
      case SettingId::kCompressThreshold: s.compress_threshold = v; break;
      case SettingId::kMaxConcurrentCalls: s.max_concurrent_calls = v; break;
      case SettingId::kIdleTimeoutMillis: s.idle_timeout_millis = v; break;
      default: break;  // unknown ids are ignored
    }
  }
  return s;
}

google::rpc::Status ParseStatus(std::string_view payload) {
  google::rpc::Status st;
  if (!st.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    Fail(ErrorCode::kBadPayload, "status is not a google.rpc.Status");
  }
  return st;
}

GoAway ParseGoAway(std::string_view payload) {
  if (payload.size() < 4) {
    Fail(ErrorCode::kBadPayload, "GOAWAY payload of " + std::to_string(payload.size()) + " bytes");
  }
  GoAway g;
  g.last_id = ReadU32(payload.data());
  g.status = ParseStatus(payload.substr(4));
  return g;
}

}  // namespace calc::wire
