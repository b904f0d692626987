// calc raw TCP protocol v1 framing (PROTOCOL.md): constants, the frame
// decoder, encoders for the client's frames and parsers for every payload.
// No sockets here: calc::TcpClient (tcp_client.h) drives it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "google/rpc/status.pb.h"

namespace calc::wire {

inline constexpr std::string_view kMagic = "CALC";
inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kPrefaceSize = 5;
inline constexpr size_t kLengthSize = 4;
inline constexpr size_t kHeaderSize = 6;  // kind, flags, id
inline constexpr size_t kFrameOverhead = kLengthSize + kHeaderSize;

inline constexpr uint32_t kDefaultMaxMessageSize = 4u << 20;
inline constexpr uint32_t kDefaultMaxFrameSize = kDefaultMaxMessageSize + (16u << 10);
inline constexpr uint32_t kDefaultCompressThreshold = 256;
inline constexpr uint32_t kDefaultMaxConcurrentCalls = 1024;
inline constexpr uint32_t kDefaultIdleTimeoutMillis = 300000;

inline constexpr uint32_t kMaxMethodRef = 65535;
inline constexpr size_t kMaxMethodNameLen = 512;
inline constexpr size_t kMaxMetadataLen = 8 << 10;
inline constexpr size_t kMaxMethodRefs = 256;
inline constexpr size_t kMaxPingPayload = 64;

enum class Kind : uint8_t {
  kSettings = 0x01,
  kRequest = 0x02,
  kMessage = 0x03,
  kHalfClose = 0x04,
  kResponse = 0x05,
  kStatus = 0x06,
  kCancel = 0x07,
  kPing = 0x08,
  kPong = 0x09,
  kGoAway = 0x0A,
};

// KindName returns "SETTINGS", "REQUEST", ... or "0x42" for an unknown kind.
std::string KindName(uint8_t kind);
bool IsKnownKind(uint8_t kind);

namespace flags {
inline constexpr uint8_t kCompressed = 0x01;  // REQUEST, MESSAGE, RESPONSE: the message is a snappy block
inline constexpr uint8_t kMethodName = 0x02;  // REQUEST: the header binds the method ref to a name
inline constexpr uint8_t kDeadline = 0x04;    // REQUEST: the header carries a deadline budget
inline constexpr uint8_t kMetadata = 0x08;    // REQUEST: the header carries metadata
}  // namespace flags

// The errors of the wire layer, named as in testdata/wire/vectors.json.
enum class ErrorCode {
  kBadMagic,         // BAD_MAGIC
  kFrameTooLarge,    // FRAME_TOO_LARGE
  kFrameTooSmall,    // FRAME_TOO_SMALL
  kUnknownKind,      // UNKNOWN_KIND
  kTruncated,        // TRUNCATED
  kMessageTooLarge,  // MESSAGE_TOO_LARGE
  kCorruptMessage,   // CORRUPT_MESSAGE
  kBadHeader,        // BAD_HEADER: malformed request header
  kBadPayload,       // BAD_PAYLOAD: malformed SETTINGS / STATUS / GOAWAY payload
};
const char* ErrorName(ErrorCode code);

class WireError : public std::runtime_error {
 public:
  WireError(ErrorCode code, const std::string& detail);
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

struct Frame {
  uint8_t kind = 0;
  uint8_t flags = 0;
  uint32_t id = 0;
  std::string payload;
};

// ---- preface ----------------------------------------------------------------

// AppendPreface appends the client preface, "CALC" and the version byte.
void AppendPreface(std::string& dst);
// ParsePreface checks a client preface and returns its version byte. It
// throws BAD_MAGIC as soon as the first four bytes are not "CALC", and
// TRUNCATED if the input ends first.
uint8_t ParsePreface(std::string_view bytes);

// ---- frame decoding ---------------------------------------------------------

// FrameDecoder splits a byte stream into frames. Bytes are pushed with Feed
// and complete frames pulled with Next. A length prefix is checked against
// the max frame size as soon as its four bytes arrive, before any payload is
// buffered, and memory grows only with the bytes actually fed. Errors are
// sticky: after one the stream cannot be resynchronised.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_frame_size = kDefaultMaxFrameSize);

  void Feed(const char* data, size_t n);
  void Feed(std::string_view data) { Feed(data.data(), data.size()); }

  // Next returns the next complete frame, or nullopt if more bytes are
  // needed. Throws FRAME_TOO_LARGE / FRAME_TOO_SMALL (nothing consumed) or
  // UNKNOWN_KIND (the frame consumed).
  std::optional<Frame> Next();

  // Finish is called at end of input: it throws TRUNCATED if part of a
  // frame is buffered.
  void Finish() const;

  size_t buffered() const { return buf_.size() - start_; }
  uint32_t max_frame_size() const { return max_frame_; }
  void set_max_frame_size(uint32_t n) { max_frame_ = n; }

 private:
  uint32_t max_frame_;
  std::string buf_;
  size_t start_ = 0;
};

// ---- encoding ---------------------------------------------------------------

void AppendUvarint(std::string& dst, uint64_t v);
// ReadUvarint consumes a uvarint from the front of *p; false if malformed
// (runs off the end, or more than 64 bits).
bool ReadUvarint(std::string_view* p, uint64_t* v);
void AppendU32(std::string& dst, uint32_t v);
uint32_t ReadU32(const char* p);

// AppendFrame appends a whole frame: length, kind, flags, id, payload.
void AppendFrame(std::string& dst, Kind kind, uint8_t flags, uint32_t id, std::string_view payload);

using Metadata = std::vector<std::pair<std::string, std::string>>;

struct RequestHeader {
  uint32_t method_ref = 0;
  std::string method_name;  // non-empty: bind method_ref to it (METHOD_NAME)
  std::optional<std::chrono::microseconds> timeout;  // deadline budget (DEADLINE)
  Metadata metadata;                                 // METADATA when not empty
};

// AppendRequestHeader appends h and returns the flags describing it.
uint8_t AppendRequestHeader(std::string& dst, const RequestHeader& h);
// ParseRequestHeader decodes the header at the start of a REQUEST payload and
// returns the message bytes after it. Throws BAD_HEADER.
std::string_view ParseRequestHeader(uint8_t flags, std::string_view payload, RequestHeader* h);

// AppendMessage appends msg as a frame's message: a snappy block (returning
// flags::kCompressed) if msg is at least threshold bytes and the block is
// smaller, else as is (returning 0). threshold 0 disables compression.
uint8_t AppendMessage(std::string& dst, std::string_view msg, uint32_t threshold);
// DecodeMessage returns a frame's message. A compressed one's decoded length
// is checked against max_message_size before anything is decoded. Throws
// MESSAGE_TOO_LARGE or CORRUPT_MESSAGE.
std::string DecodeMessage(std::string_view payload, uint8_t flags, uint32_t max_message_size);

// ---- connection payloads -----------------------------------------------------

enum class SettingId : uint16_t {
  kMaxFrameSize = 1,
  kMaxMessageSize = 2,
  kCompressThreshold = 3,
  kMaxConcurrentCalls = 4,
  kIdleTimeoutMillis = 5,
};

struct Settings {
  uint32_t max_frame_size = kDefaultMaxFrameSize;
  uint32_t max_message_size = kDefaultMaxMessageSize;
  uint32_t compress_threshold = kDefaultCompressThreshold;
  uint32_t max_concurrent_calls = kDefaultMaxConcurrentCalls;
  uint32_t idle_timeout_millis = kDefaultIdleTimeoutMillis;
};

void AppendSettings(std::string& dst, const Settings& s);
// ParseSettings applies the entries of a SETTINGS payload to the defaults
// (unknown ids are skipped). Throws BAD_PAYLOAD.
Settings ParseSettings(std::string_view payload);

// ParseStatus decodes a STATUS payload (empty = OK). Throws BAD_PAYLOAD.
google::rpc::Status ParseStatus(std::string_view payload);

struct GoAway {
  uint32_t last_id = 0;
  google::rpc::Status status;
};
// ParseGoAway decodes a GOAWAY payload. Throws BAD_PAYLOAD.
GoAway ParseGoAway(std::string_view payload);

}  // namespace calc::wire
