// Unit tests of calc::wire against PROTOCOL.md's examples and limits.
#include <gtest/gtest.h>

#include "calc/wire.h"
#include "calculator/v1/calculator.pb.h"

namespace calc::wire {
namespace {

std::string Unhex(std::string_view h) {
  std::string out;
  auto nib = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (size_t i = 0; i + 1 < h.size(); i += 2) {
    if (h[i] == ' ') {
      i--;
      continue;
    }
    out.push_back(static_cast<char>(nib(h[i]) * 16 + nib(h[i + 1])));
  }
  return out;
}

std::string AddMessage() {
  calculator::v1::CalculateRequest r;
  r.set_operator_(calculator::v1::OPERATOR_ADD);
  r.set_lhs(2);
  r.set_rhs(3);
  return r.SerializeAsString();
}

TEST(Wire, ProtocolExampleCall2With250msBudget) {
  RequestHeader h;
  h.method_ref = 1;
  h.timeout = std::chrono::milliseconds(250);
  std::string payload;
  uint8_t f = AppendRequestHeader(payload, h);
  f |= AppendMessage(payload, AddMessage(), kDefaultCompressThreshold);
  std::string frame;
  AppendFrame(frame, Kind::kRequest, f, 2, payload);
  EXPECT_EQ(frame, Unhex("00000010 0204 00000002 01 90A10F 080110021803"));
}

TEST(Wire, ProtocolExampleFirstCallBindsRef) {
  RequestHeader h;
  h.method_ref = 1;
  h.method_name = "/calculator.v1.CalculatorService/Calculate";
  std::string payload;
  uint8_t f = AppendRequestHeader(payload, h);
  EXPECT_EQ(f, flags::kMethodName);
  f |= AppendMessage(payload, AddMessage(), kDefaultCompressThreshold);
  std::string frame;
  AppendFrame(frame, Kind::kRequest, f, 1, payload);
  EXPECT_EQ(frame.size(), 4u + 0x38);
  EXPECT_EQ(frame.substr(0, 11), Unhex("00000038 0202 00000001 01"));
}

TEST(Wire, RequestHeaderRoundTrip) {
  RequestHeader h;
  h.method_ref = 300;
  h.method_name = "/a.B/C";
  h.timeout = std::chrono::microseconds(123456789);
  h.metadata = {{"authorization", "Bearer x"}, {"trace-bin", std::string("\0\1", 2)}};
  std::string payload;
  uint8_t f = AppendRequestHeader(payload, h);
  EXPECT_EQ(f, flags::kMethodName | flags::kDeadline | flags::kMetadata);
  payload += "MSG";
  RequestHeader got;
  EXPECT_EQ(ParseRequestHeader(f, payload, &got), "MSG");
  EXPECT_EQ(got.method_ref, 300u);
  EXPECT_EQ(got.method_name, h.method_name);
  EXPECT_EQ(got.timeout, h.timeout);
  EXPECT_EQ(got.metadata, h.metadata);
}

TEST(Wire, RequestHeaderErrors) {
  RequestHeader h;
  EXPECT_THROW(ParseRequestHeader(0, Unhex("00"), &h), WireError);                  // ref 0
  EXPECT_THROW(ParseRequestHeader(0, Unhex("808004"), &h), WireError);              // ref > 65535
  EXPECT_THROW(ParseRequestHeader(flags::kMethodName, Unhex("0105 41"), &h), WireError);  // name past payload
  EXPECT_THROW(ParseRequestHeader(0, Unhex("80"), &h), WireError);                  // truncated varint
}

TEST(Wire, CompressionThreshold) {
  std::string below(255, 'a'), at(256, 'a');
  std::string out;
  EXPECT_EQ(AppendMessage(out, below, 256), 0);
  EXPECT_EQ(out, below);
  out.clear();
  EXPECT_EQ(AppendMessage(out, at, 256), flags::kCompressed);
  EXPECT_LT(out.size(), at.size());
  EXPECT_EQ(DecodeMessage(out, flags::kCompressed, kDefaultMaxMessageSize), at);
  // Incompressible data is sent as is even above the threshold.
  std::string noise;
  uint32_t x = 12345;
  for (int i = 0; i < 1000; i++) noise.push_back(static_cast<char>((x = x * 1103515245 + 12345) >> 24));
  out.clear();
  EXPECT_EQ(AppendMessage(out, noise, 256), 0);
  EXPECT_EQ(out, noise);
  out.clear();
  EXPECT_EQ(AppendMessage(out, at, 0), 0);  // threshold 0 disables
}

TEST(Wire, DecodeMessageLimits) {
  try {
    DecodeMessage(Unhex("80808080040061"), flags::kCompressed, kDefaultMaxMessageSize);
    FAIL() << "snappy bomb decoded";
  } catch (const WireError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kMessageTooLarge);
  }
  try {
    DecodeMessage(Unhex("0affffff"), flags::kCompressed, kDefaultMaxMessageSize);
    FAIL() << "corrupt block decoded";
  } catch (const WireError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kCorruptMessage);
  }
  try {
    DecodeMessage(std::string(65, 'x'), 0, 64);
    FAIL() << "oversize message accepted";
  } catch (const WireError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kMessageTooLarge);
  }
}

TEST(Wire, DecoderChecksLengthBeforePayload) {
  FrameDecoder d(64);
  d.Feed(Unhex("00000041"));  // 65 > 64, no payload yet
  try {
    d.Next();
    FAIL() << "oversize frame accepted";
  } catch (const WireError& e) {
    EXPECT_EQ(e.code(), ErrorCode::kFrameTooLarge);
  }
  EXPECT_LE(d.buffered(), 4u);
}

TEST(Wire, DecoderIncremental) {
  std::string stream;
  AppendFrame(stream, Kind::kPing, 0, 0, Unhex("000000000000002a"));
  AppendFrame(stream, Kind::kCancel, 0, 9, "");
  FrameDecoder d;
  std::vector<Frame> frames;
  for (char c : stream) {
    d.Feed(&c, 1);
    while (auto f = d.Next()) frames.push_back(*f);
  }
  d.Finish();
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].kind, 0x08);
  EXPECT_EQ(frames[1].id, 9u);
  d.Feed(stream.substr(0, 7));
  EXPECT_FALSE(d.Next());
  EXPECT_THROW(d.Finish(), WireError);
}

TEST(Wire, SettingsAndGoAway) {
  std::string p;
  Settings s;
  s.idle_timeout_millis = 0;
  AppendSettings(p, s);
  p += Unhex("0063 00000001");  // unknown id 99 is ignored
  Settings got = ParseSettings(p);
  EXPECT_EQ(got.max_frame_size, kDefaultMaxFrameSize);
  EXPECT_EQ(got.idle_timeout_millis, 0u);
  EXPECT_THROW(ParseSettings("12345"), WireError);
  GoAway g = ParseGoAway(Unhex("00000007 1214") + "server shutting down");
  EXPECT_EQ(g.last_id, 7u);
  EXPECT_EQ(g.status.code(), 0);
  EXPECT_EQ(g.status.message(), "server shutting down");
}

TEST(Wire, Preface) {
  std::string p;
  AppendPreface(p);
  EXPECT_EQ(p, Unhex("43414C4301"));
  EXPECT_EQ(ParsePreface(p), 1);
  EXPECT_THROW(ParsePreface("GET / HTTP/1.1"), WireError);
}

}  // namespace
}  // namespace calc::wire
