// Decodes every vector of testdata/wire/vectors.json with calc::wire, as the
// file's "about" says: preface vectors with ParsePreface, the others frame by
// frame with FrameDecoder (expect exactly `frames`, then end of input, or
// `error` after them), each frame's payload parsed and its message decoded
// and compared by value. Every vector is decoded twice: fed whole, and fed one
// byte at a time (the way a socket may deliver it); both must pass.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>

#include <map>
#include <memory>
#include <sstream>

#include "calc/wire.h"
#include "runner.h"

namespace calc::conformance {

namespace {

using nlohmann::json;
using wire::ErrorName;
using wire::WireError;

const std::map<std::string, std::pair<std::string, std::string>> kMethodTypes = {
    {"/calculator.v1.CalculatorService/Calculate", {"calculator.v1.CalculateRequest", "calculator.v1.CalculateResponse"}},
    {"/calculator.v1.CalculatorService/Evaluate", {"calculator.v1.EvaluateRequest", "calculator.v1.EvaluateResponse"}},
    {"/calculator.v1.CalculatorService/CalculateStream",
     {"calculator.v1.CalculateStreamRequest", "calculator.v1.CalculateStreamResponse"}},
};
const std::string kStreamMethod = "/calculator.v1.CalculatorService/CalculateStream";

std::string Hex(std::string_view b) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : b) {
    out.push_back(d[c >> 4]);
    out.push_back(d[c & 15]);
  }
  return out;
}

std::string Unhex(const std::string& h) {
  if (h.size() % 2) throw std::runtime_error("odd-length hex");
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::runtime_error("bad hex digit");
  };
  std::string out;
  for (size_t i = 0; i < h.size(); i += 2) out.push_back(static_cast<char>(nib(h[i]) * 16 + nib(h[i + 1])));
  return out;
}

std::unique_ptr<google::protobuf::Message> NewMessage(const std::string& type) {
  auto* desc = google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(type);
  if (!desc) throw std::runtime_error("unknown message type " + type);
  return std::unique_ptr<google::protobuf::Message>(
      google::protobuf::MessageFactory::generated_factory()->GetPrototype(desc)->New());
}

std::optional<std::string> CheckStatus(const google::rpc::Status& st, const json& want_in) {
  json want = want_in.is_null() ? json::object() : want_in;
  std::vector<std::string> types, want_types;
  for (const auto& d : st.details()) types.push_back(d.type_url());
  if (want.contains("detail_types")) want_types = want["detail_types"].get<std::vector<std::string>>();
  int code = want.value("code", 0);
  std::string message = want.value("message", "");
  if (st.code() != code || st.message() != message || types != want_types) {
    return "status " + st.ShortDebugString() + ", want " + want.dump();
  }
  return std::nullopt;
}

// CheckFrame compares one decoded frame with its expected form.
std::optional<std::string> CheckFrame(const json& want, const wire::Frame& f, uint32_t max_message,
                                      std::map<uint32_t, std::string>& bound) {
  std::string want_kind = want.at("kind");
  int want_flags = want.value("flags", 0);
  uint32_t want_id = want.value("id", 0u);
  if (wire::KindName(f.kind) != want_kind || f.flags != want_flags || f.id != want_id) {
    std::ostringstream o;
    o << "frame " << wire::KindName(f.kind) << " flags " << int(f.flags) << " id " << f.id << ", want " << want_kind
      << " " << want_flags << " " << want_id;
    return o.str();
  }
  std::string_view msg_bytes = f.payload;
  std::string msg_type;
  switch (static_cast<wire::Kind>(f.kind)) {
    case wire::Kind::kRequest: {
      wire::RequestHeader h;
      try {
        msg_bytes = wire::ParseRequestHeader(f.flags, f.payload, &h);
      } catch (const WireError& e) {
        return std::string("request header: ") + e.what();
      }
      if (!h.method_name.empty()) bound[h.method_ref] = h.method_name;
      if (h.method_ref != want.value("method_ref", 0u) || h.method_name != want.value("method_name", "")) {
        return "method " + std::to_string(h.method_ref) + " \"" + h.method_name + "\", want " +
               std::to_string(want.value("method_ref", 0u)) + " \"" + want.value("method_name", "") + "\"";
      }
      bool want_timeout = want.contains("timeout_us");
      if (want_timeout != h.timeout.has_value() ||
          (want_timeout && h.timeout->count() != want["timeout_us"].get<int64_t>())) {
        return "timeout " + (h.timeout ? std::to_string(h.timeout->count()) + "us" : std::string("none")) +
               ", want " + (want_timeout ? want["timeout_us"].dump() + "us" : std::string("none"));
      }
      wire::Metadata want_md;
      if (want.contains("metadata")) {
        for (const auto& pair : want["metadata"]) want_md.emplace_back(pair.at(0), pair.at(1));
      }
      if (h.metadata != want_md) {
        return "metadata of " + std::to_string(h.metadata.size()) + " pairs differs from " + want["metadata"].dump();
      }
      auto it = kMethodTypes.find(bound.count(h.method_ref) ? bound[h.method_ref] : "");
      if (it != kMethodTypes.end() && it->first != kStreamMethod) msg_type = it->second.first;
      break;
    }
    case wire::Kind::kMessage:
    case wire::Kind::kResponse:
      msg_type = want.value("message_type", "");  // the direction, known to a real peer, decides the type
      break;
    case wire::Kind::kStatus:
      try {
        return CheckStatus(wire::ParseStatus(f.payload), want.value("status", json()));
      } catch (const WireError& e) {
        return e.what();
      }
    case wire::Kind::kGoAway:
      try {
        wire::GoAway g = wire::ParseGoAway(f.payload);
        if (!want.contains("last_id") || g.last_id != want["last_id"].get<uint32_t>()) {
          return "last id " + std::to_string(g.last_id) + ", want " + want.value("last_id", json()).dump();
        }
        return CheckStatus(g.status, want.value("status", json()));
      } catch (const WireError& e) {
        return e.what();
      }
    case wire::Kind::kSettings:
      try {
        wire::Settings s = wire::ParseSettings(f.payload);
        const std::map<std::string, uint32_t> got = {
            {"MAX_FRAME_SIZE", s.max_frame_size},         {"MAX_MESSAGE_SIZE", s.max_message_size},
            {"COMPRESS_THRESHOLD", s.compress_threshold}, {"MAX_CONCURRENT_CALLS", s.max_concurrent_calls},
            {"IDLE_TIMEOUT_MILLIS", s.idle_timeout_millis},
        };
        const json want_settings = want.value("settings", json::object());
        for (const auto& [k, v] : want_settings.items()) {
          auto g = got.find(k);
          if (g == got.end()) return "unknown setting " + k;
          if (g->second != v.get<uint32_t>()) return k + " = " + std::to_string(g->second) + ", want " + v.dump();
        }
        return std::nullopt;
      } catch (const WireError& e) {
        return e.what();
      }
    case wire::Kind::kPing:
    case wire::Kind::kPong:
      if (Hex(f.payload) != want.value("ping_hex", "")) {
        return "ping payload " + Hex(f.payload) + ", want " + want.value("ping_hex", "");
      }
      return std::nullopt;
    default:  // HALF_CLOSE, CANCEL
      if (!f.payload.empty()) return wire::KindName(f.kind) + " payload " + Hex(f.payload) + ", want empty";
      return std::nullopt;
  }

  if (msg_type != want.value("message_type", "")) {
    return "message type \"" + msg_type + "\", want \"" + want.value("message_type", "") + "\"";
  }
  std::string want_error = want.value("message_error", "");
  std::string msg;
  try {
    msg = wire::DecodeMessage(msg_bytes, f.flags, max_message);
  } catch (const WireError& e) {
    if (ErrorName(e.code()) != want_error) return std::string("message error ") + e.what() + ", want " + want_error;
    return std::nullopt;
  }
  if (msg_type.empty()) {
    if (!msg.empty() || !want_error.empty()) {
      return "message " + Hex(msg) + " for a method without one; want error \"" + want_error + "\"";
    }
    return std::nullopt;
  }
  auto got = NewMessage(msg_type);
  if (!got->ParseFromString(msg)) {
    if (want_error != "INVALID_PROTOBUF") return "message does not parse as " + msg_type + ", want " + want_error;
    return std::nullopt;
  }
  if (!want_error.empty()) return "message decoded as " + ToJson(*got) + ", want error " + want_error;
  auto expected = NewMessage(msg_type);
  if (auto err = FromJson(want.value("message", json::object()), expected.get())) return err;
  if (!SameMessage(*got, *expected)) return "message " + ToJson(*got) + ", want " + ToJson(*expected);
  return std::nullopt;
}

// CheckVector decodes one vector, feeding its bytes chunk bytes at a time
// (0 = all at once).
std::optional<std::string> CheckVector(const json& v, size_t chunk) {
  std::string raw = Unhex(v.at("hex"));
  std::string want_error = v.value("error", "");
  if (v.value("preface", false)) {
    uint8_t version;
    try {
      version = wire::ParsePreface(raw);
    } catch (const WireError& e) {
      if (ErrorName(e.code()) == want_error) return std::nullopt;
      return std::string("preface error ") + e.what() + ", want " + (want_error.empty() ? "none" : want_error);
    }
    if (!want_error.empty()) return "preface accepted (version " + std::to_string(version) + "), want " + want_error;
    if (version != v.value("version", -1)) {
      return "version " + std::to_string(version) + ", want " + v.value("version", json()).dump();
    }
    return std::nullopt;
  }

  uint32_t max_frame = wire::kDefaultMaxFrameSize, max_message = wire::kDefaultMaxMessageSize;
  if (v.contains("limits")) {
    max_frame = v["limits"].value("max_frame_size", max_frame);
    max_message = v["limits"].value("max_message_size", max_message);
  }
  json frames = v.value("frames", json::array());
  wire::FrameDecoder dec(max_frame);
  size_t fed = 0;
  std::map<uint32_t, std::string> bound;
  for (size_t i = 0;; i++) {
    std::optional<wire::Frame> f;
    std::string err;
    try {
      for (;;) {
        f = dec.Next();
        if (f || fed == raw.size()) break;
        size_t n = chunk == 0 ? raw.size() - fed : std::min(chunk, raw.size() - fed);
        dec.Feed(raw.data() + fed, n);
        fed += n;
      }
      if (!f) dec.Finish();
    } catch (const WireError& e) {
      err = ErrorName(e.code());
      if (err != want_error || i != frames.size()) {
        return "frame " + std::to_string(i) + ": " + e.what() + "; want " + std::to_string(frames.size()) +
               " frames then " + (want_error.empty() ? "end of input" : want_error);
      }
      return std::nullopt;
    }
    if (!f) {
      if (!want_error.empty() || i != frames.size()) {
        return "end of input after " + std::to_string(i) + " frames; want " + std::to_string(frames.size()) +
               " frames then " + (want_error.empty() ? "end of input" : want_error);
      }
      return std::nullopt;
    }
    if (i >= frames.size()) return "more than " + std::to_string(frames.size()) + " frames";
    if (auto why = CheckFrame(frames[i], *f, max_message, bound)) return "frame " + std::to_string(i) + ": " + *why;
  }
}

}  // namespace

void RunVectors(const json& file, Tally& tally) {
  const json& vectors = file.at("vectors");
  if (vectors.empty()) tally.Fail("vectors.json", "vector", "no vectors");
  for (const auto& v : vectors) {
    std::string name = v.value("name", "?");
    std::optional<std::string> why;
    try {
      why = CheckVector(v, 0);
      if (!why) {
        if (auto w = CheckVector(v, 1)) why = "fed byte by byte: " + *w;
      }
    } catch (const std::exception& e) {
      why = e.what();
    }
    tally.Record(name, "vector", why);
  }
}

}  // namespace calc::conformance
