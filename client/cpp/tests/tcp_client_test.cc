// calc::TcpClient against a scripted fake server on a socketpair: what calcd
// cannot easily be made to do (out-of-order answers, GOAWAY with calls in
// flight, a silent server, a snappy bomb) is checked here.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <thread>

#include "calc/status_details.h"
#include "calc/tcp_client.h"

namespace calc {
namespace {

using calculator::v1::CalculateRequest;
using calculator::v1::CalculateResponse;
using std::chrono::milliseconds;
using wire::Frame;
using wire::Kind;

// FakeServer is the server end of a socketpair.
class FakeServer {
 public:
  FakeServer() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) throw std::runtime_error("socketpair");
    fd_ = sv[0];
    client_fd_ = sv[1];
  }
  ~FakeServer() { Close(); }

  // Connect sends SETTINGS (settings arrive before the client waits for
  // them) and adopts the client end; then it checks the preface.
  std::unique_ptr<TcpClient> Connect(wire::Settings s = {}, TcpClient::Options opts = {}) {
    std::string p;
    wire::AppendSettings(p, s);
    Send(Kind::kSettings, 0, 0, p);
    auto client = TcpClient::Adopt(client_fd_, opts);
    std::string preface = ReadBytes(wire::kPrefaceSize);
    EXPECT_EQ(wire::ParsePreface(preface), 1);
    return client;
  }

  void Send(Kind kind, uint8_t flags, uint32_t id, std::string_view payload) {
    std::string b;
    wire::AppendFrame(b, kind, flags, id, payload);
    ASSERT_EQ(::send(fd_, b.data(), b.size(), MSG_NOSIGNAL), static_cast<ssize_t>(b.size()));
  }

  int client_fd() const { return client_fd_; }

  void SendStatus(uint32_t id, const google::rpc::Status& st) { Send(Kind::kStatus, 0, id, st.SerializeAsString()); }

  // ReadFrame returns the next frame from the client, failing after 5 s.
  Frame ReadFrame() {
    for (;;) {
      if (auto f = dec_.Next()) return *f;
      Fill();
    }
  }

  // ReadRequest reads a REQUEST and returns its header and message.
  std::string ReadRequest(Frame* f, wire::RequestHeader* h) {
    *f = ReadFrame();
    EXPECT_EQ(f->kind, static_cast<uint8_t>(Kind::kRequest));
    return wire::DecodeMessage(wire::ParseRequestHeader(f->flags, f->payload, h), f->flags, wire::kDefaultMaxMessageSize);
  }

  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  std::string ReadBytes(size_t n) {
    while (pending_.size() < n) {
      char buf[4096];
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 5000) != 1) throw std::runtime_error("fake server: read timeout");
      ssize_t r = ::read(fd_, buf, sizeof buf);
      if (r <= 0) throw std::runtime_error("fake server: client closed");
      pending_.append(buf, static_cast<size_t>(r));
    }
    std::string out = pending_.substr(0, n);
    pending_.erase(0, n);
    dec_.Feed(pending_);
    pending_.clear();
    return out;
  }
  void Fill() {
    char buf[4096];
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) throw std::runtime_error("fake server: read timeout");
    ssize_t r = ::read(fd_, buf, sizeof buf);
    if (r <= 0) throw std::runtime_error("fake server: client closed");
    dec_.Feed(buf, static_cast<size_t>(r));
  }

  int fd_ = -1, client_fd_ = -1;
  std::string pending_;
  wire::FrameDecoder dec_;
};

CalculateRequest Add(int64_t a, int64_t b) {
  CalculateRequest r;
  r.set_operator_(calculator::v1::OPERATOR_ADD);
  r.set_lhs(a);
  r.set_rhs(b);
  return r;
}

std::string Response(int64_t v) {
  CalculateResponse r;
  r.set_result(v);
  return r.SerializeAsString();
}

TEST(TcpClient, PairsOutOfOrderAnswersByIdAndBindsRefsOnce) {
  FakeServer srv;
  auto client = srv.Connect();
  CallContext c1, c2, c3;
  auto f1 = client->Calculate(c1, Add(1, 1));
  auto f2 = client->Calculate(c2, Add(2, 2));
  auto f3 = client->Calculate(c3, Add(3, 3));
  std::vector<uint32_t> ids;
  for (int i = 0; i < 3; i++) {
    Frame f;
    wire::RequestHeader h;
    CalculateRequest req;
    ASSERT_TRUE(req.ParseFromString(srv.ReadRequest(&f, &h)));
    EXPECT_EQ(h.method_ref, 1u);
    EXPECT_EQ(h.method_name, i == 0 ? std::string(kCalculateMethod) : "");
    EXPECT_FALSE(h.timeout.has_value());
    EXPECT_EQ(req.lhs(), i + 1);
    ids.push_back(f.id);
  }
  EXPECT_LT(ids[0], ids[1]);
  EXPECT_LT(ids[1], ids[2]);
  srv.Send(Kind::kResponse, 0, ids[2], Response(6));
  srv.Send(Kind::kResponse, 0, ids[0], Response(2));
  srv.Send(Kind::kResponse, 0, ids[1], Response(4));
  EXPECT_EQ(f1.get().value.result(), 2);
  EXPECT_EQ(f2.get().value.result(), 4);
  EXPECT_EQ(f3.get().value.result(), 6);
}

TEST(TcpClient, CallbackFormCompletesOnTheReaderWhichMayStartTheNextCall) {
  FakeServer srv;
  auto client = srv.Connect();
  std::promise<std::thread::id> first_thread;
  std::promise<Result<CalculateResponse>> second;
  {
    CallContext c1;  // the call keeps what it needs: the context may go
    client->Calculate(c1, Add(1, 1), [&](Result<CalculateResponse>&& r) {
      EXPECT_TRUE(r.ok()) << r.status.error_message();
      EXPECT_EQ(r.value.result(), 2);
      first_thread.set_value(std::this_thread::get_id());
      CallContext c2;
      client->Calculate(c2, Add(2, 2), [&](Result<CalculateResponse>&& r2) { second.set_value(std::move(r2)); });
    });
  }
  Frame f;
  wire::RequestHeader h;
  CalculateRequest req;
  ASSERT_TRUE(req.ParseFromString(srv.ReadRequest(&f, &h)));
  EXPECT_EQ(req.lhs(), 1);
  srv.Send(Kind::kResponse, 0, f.id, Response(2));
  ASSERT_TRUE(req.ParseFromString(srv.ReadRequest(&f, &h)));  // sent from the first call's callback
  EXPECT_EQ(req.lhs(), 2);
  EXPECT_NE(first_thread.get_future().get(), std::this_thread::get_id());
  srv.Send(Kind::kStatus, 0, f.id, [] {
    google::rpc::Status st;
    st.set_code(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
    st.set_message("no");
    return st.SerializeAsString();
  }());
  auto r2 = second.get_future().get();
  EXPECT_EQ(r2.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r2.status.error_message(), "no");

  // A call that cannot start completes at once, on the calling thread,
  // before Calculate returns.
  srv.Close();
  for (int i = 0; i < 500 && !client->closed(); i++) std::this_thread::sleep_for(milliseconds(10));
  ASSERT_TRUE(client->closed());
  bool ran = false;
  CallContext c3;
  client->Calculate(c3, Add(3, 3), [&](Result<CalculateResponse>&& r) {
    ran = true;
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  });
  EXPECT_TRUE(ran);
}

TEST(TcpClient, GoAwayFailsCallsAboveLastIdAsRetryable) {
  FakeServer srv;
  auto client = srv.Connect();
  CallContext c1, c2, c3;
  auto f1 = client->Calculate(c1, Add(1, 1));
  auto f2 = client->Calculate(c2, Add(2, 2));
  auto f3 = client->Calculate(c3, Add(3, 3));
  std::vector<uint32_t> ids;
  for (int i = 0; i < 3; i++) {
    Frame f;
    wire::RequestHeader h;
    srv.ReadRequest(&f, &h);
    ids.push_back(f.id);
  }
  google::rpc::Status why;
  why.set_message("server shutting down");
  std::string p;
  wire::AppendU32(p, ids[0]);
  p += why.SerializeAsString();
  srv.Send(Kind::kGoAway, 0, 0, p);
  auto r2 = f2.get(), r3 = f3.get();
  EXPECT_NE(r2.status.error_message().find("GOAWAY"), std::string::npos);
  EXPECT_EQ(r2.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(r2.safe_to_retry);
  EXPECT_EQ(r3.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(r3.safe_to_retry);
  EXPECT_TRUE(client->draining());
  CallContext c4;
  auto r4 = client->Calculate(c4, Add(4, 4)).get();
  CallContext c5;
  auto s5 = client->CalculateStream(c5);
  EXPECT_EQ(s5->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(s5->safe_to_retry());
  EXPECT_EQ(r4.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(r4.safe_to_retry);
  srv.Send(Kind::kResponse, 0, ids[0], Response(2));  // accepted calls are still answered
  auto r1 = f1.get();
  EXPECT_TRUE(r1.ok());
  EXPECT_EQ(r1.value.result(), 2);
}

TEST(TcpClient, DeadlineIsSentAndEnforcedLocallyThenCancelled) {
  FakeServer srv;
  auto client = srv.Connect();
  CallContext ctx;
  ctx.set_timeout(milliseconds(100));
  auto start = Clock::now();
  auto fut = client->Calculate(ctx, Add(1, 2));
  Frame f;
  wire::RequestHeader h;
  srv.ReadRequest(&f, &h);
  ASSERT_TRUE(h.timeout.has_value());
  EXPECT_GT(h.timeout->count(), 50000);
  EXPECT_LE(h.timeout->count(), 100000);
  auto r = fut.get();  // the server never answers
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_GE(Clock::now() - start, milliseconds(95));
  Frame cancel = srv.ReadFrame();
  EXPECT_EQ(cancel.kind, static_cast<uint8_t>(Kind::kCancel));
  EXPECT_EQ(cancel.id, f.id);
  srv.Send(Kind::kResponse, 0, f.id, Response(3));  // a late answer is ignored
  CallContext ctx2;
  auto fut2 = client->Calculate(ctx2, Add(5, 5));
  srv.ReadRequest(&f, &h);
  srv.Send(Kind::kResponse, 0, f.id, Response(10));
  EXPECT_EQ(fut2.get().value.result(), 10);
}

TEST(TcpClient, StreamMessagesHalfCloseAndCancel) {
  FakeServer srv;
  auto client = srv.Connect();
  CallContext ctx;
  auto stream = client->CalculateStream(ctx);
  calculator::v1::CalculateStreamRequest m;
  m.set_id(7);
  *m.mutable_calculation() = Add(6, 7);
  ASSERT_TRUE(stream->Write(m));
  Frame f;
  wire::RequestHeader h;
  EXPECT_EQ(srv.ReadRequest(&f, &h), "");  // a streaming REQUEST carries no message
  EXPECT_EQ(h.method_name, kCalculateStreamMethod);
  Frame msg = srv.ReadFrame();
  EXPECT_EQ(msg.kind, static_cast<uint8_t>(Kind::kMessage));
  EXPECT_EQ(msg.id, f.id);
  calculator::v1::CalculateStreamResponse out;
  out.set_id(7);
  out.set_result(13);
  srv.Send(Kind::kMessage, 0, f.id, out.SerializeAsString());
  calculator::v1::CalculateStreamResponse got;
  ASSERT_TRUE(stream->Read(&got));
  EXPECT_EQ(got.result(), 13);
  ctx.TryCancel();
  Frame cancel = srv.ReadFrame();
  EXPECT_EQ(cancel.kind, static_cast<uint8_t>(Kind::kCancel));
  google::rpc::Status st;
  st.set_code(1);
  st.set_message("context canceled");
  srv.SendStatus(f.id, st);
  EXPECT_FALSE(stream->Read(&got));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);

  CallContext ctx2;
  auto s2 = client->CalculateStream(ctx2);
  ASSERT_TRUE(s2->WritesDone());
  EXPECT_FALSE(s2->Write(m));  // nothing after HALF_CLOSE
  srv.ReadRequest(&f, &h);
  EXPECT_EQ(srv.ReadFrame().kind, static_cast<uint8_t>(Kind::kHalfClose));
  srv.Send(Kind::kStatus, 0, f.id, "");  // empty STATUS = OK
  EXPECT_FALSE(s2->Read(&got));
  EXPECT_TRUE(s2->Finish().ok());
}

TEST(TcpClient, CompressesLargeMessagesAndMetadata) {
  FakeServer srv;
  auto client = srv.Connect();
  calculator::v1::EvaluateRequest req;
  std::string expr;
  for (int i = 0; i < 200; i++) expr += "1 + ";
  req.set_expression(expr + "1");
  CallContext ctx;
  ctx.AddMetadata("authorization", "Bearer t0ken");
  auto fut = client->Evaluate(ctx, req);
  Frame f;
  wire::RequestHeader h;
  std::string msg = srv.ReadRequest(&f, &h);
  EXPECT_TRUE(f.flags & wire::flags::kCompressed);
  EXPECT_TRUE(f.flags & wire::flags::kMetadata);
  ASSERT_EQ(h.metadata.size(), 1u);
  EXPECT_EQ(h.metadata[0].second, "Bearer t0ken");
  calculator::v1::EvaluateRequest back;
  ASSERT_TRUE(back.ParseFromString(msg));
  EXPECT_EQ(back.expression(), req.expression());
  calculator::v1::EvaluateResponse resp;
  resp.set_result(std::string(1000, '7'));
  std::string payload;
  uint8_t flags = wire::AppendMessage(payload, resp.SerializeAsString(), 256);
  EXPECT_EQ(flags, wire::flags::kCompressed);
  srv.Send(Kind::kResponse, flags, f.id, payload);
  auto r = fut.get();
  ASSERT_TRUE(r.ok()) << r.status.error_message();
  EXPECT_EQ(r.value.result(), resp.result());
}

TEST(TcpClient, TokenIsMetadataOnEveryCall) {
  FakeServer srv;
  TcpClient::Options opts;
  opts.security.token = "s3cret";
  auto client = srv.Connect({}, opts);
  CallContext c1, c2, c3;
  c2.AddMetadata("x-a", "b");
  auto f1 = client->Calculate(c1, Add(1, 1));
  auto f2 = client->Calculate(c2, Add(2, 2));
  auto s3 = client->CalculateStream(c3);
  ASSERT_TRUE(s3->WritesDone());
  std::vector<wire::Metadata> got;
  for (int i = 0; i < 3; i++) {
    Frame f;
    wire::RequestHeader h;
    srv.ReadRequest(&f, &h);
    got.push_back(h.metadata);
    if (i < 2) srv.Send(Kind::kResponse, 0, f.id, Response(0));
  }
  EXPECT_EQ(got[0], (wire::Metadata{{"authorization", "Bearer s3cret"}}));
  EXPECT_EQ(got[1], (wire::Metadata{{"authorization", "Bearer s3cret"}, {"x-a", "b"}}));
  EXPECT_EQ(got[2], (wire::Metadata{{"authorization", "Bearer s3cret"}}));
  EXPECT_TRUE(f1.get().ok());
  EXPECT_TRUE(f2.get().ok());
}

TEST(TcpClient, StatusDetailsAreTheStatusPayload) {
  FakeServer srv;
  auto client = srv.Connect();
  CallContext ctx;
  auto fut = client->Calculate(ctx, Add(1, 0));
  Frame f;
  wire::RequestHeader h;
  srv.ReadRequest(&f, &h);
  google::rpc::Status st;
  st.set_code(3);
  st.set_message("division by zero: 1 / 0");
  google::rpc::BadRequest br;
  br.add_field_violations()->set_field("rhs");
  st.add_details()->PackFrom(br);
  google::rpc::ErrorInfo info;
  info.set_reason("DIVISION_BY_ZERO");
  (*info.mutable_metadata())["offset"] = "6";
  st.add_details()->PackFrom(info);
  srv.SendStatus(f.id, st);
  auto r = fut.get();
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r.status.error_message(), "division by zero: 1 / 0");
  ErrorDetails d = DecodeErrorDetails(r.status);
  ASSERT_TRUE(d.bad_request && d.error_info);
  EXPECT_EQ(d.bad_request->field_violations(0).field(), "rhs");
  EXPECT_EQ(d.error_info->reason(), "DIVISION_BY_ZERO");
  EXPECT_EQ(d.error_info->metadata().at("offset"), "6");
}

TEST(TcpClient, SnappyBombFailsOnlyThatCall) {
  FakeServer srv;
  auto client = srv.Connect();
  CallContext ctx;
  auto fut = client->Calculate(ctx, Add(1, 1));
  Frame f;
  wire::RequestHeader h;
  srv.ReadRequest(&f, &h);
  srv.Send(Kind::kResponse, wire::flags::kCompressed, f.id, std::string("\x80\x80\x80\x80\x04\x00\x61", 7));
  EXPECT_EQ(fut.get().status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(srv.ReadFrame().kind, static_cast<uint8_t>(Kind::kCancel));
  EXPECT_FALSE(client->closed());
}

TEST(TcpClient, PingPongBothWays) {
  FakeServer srv;
  auto client = srv.Connect();
  auto rtt = client->Ping();
  Frame ping = srv.ReadFrame();
  ASSERT_EQ(ping.kind, static_cast<uint8_t>(Kind::kPing));
  EXPECT_EQ(ping.payload.size(), 8u);
  srv.Send(Kind::kPong, 0, 0, ping.payload);
  EXPECT_EQ(rtt.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_GE(rtt.get().count(), 0);
  srv.Send(Kind::kPing, 0, 0, "abc");
  Frame pong = srv.ReadFrame();
  EXPECT_EQ(pong.kind, static_cast<uint8_t>(Kind::kPong));
  EXPECT_EQ(pong.payload, "abc");
}

TEST(TcpClient, KeepalivePingsAtHalfTheIdleTimeout) {
  FakeServer srv;
  wire::Settings s;
  s.idle_timeout_millis = 200;
  auto start = Clock::now();  // before the SETTINGS that start the keepalive timer: a lower bound under any load
  auto client = srv.Connect(s);
  Frame ping = srv.ReadFrame();
  EXPECT_EQ(ping.kind, static_cast<uint8_t>(Kind::kPing));
  EXPECT_GE(Clock::now() - start, milliseconds(80));
}

TEST(TcpClient, ServerCloseFailsPendingCallsUnavailable) {
  FakeServer srv;
  auto client = srv.Connect();
  CallContext ctx;
  auto fut = client->Calculate(ctx, Add(1, 1));
  Frame f;
  wire::RequestHeader h;
  srv.ReadRequest(&f, &h);
  srv.Close();
  auto r = fut.get();
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(r.safe_to_retry);
  CallContext ctx2;
  auto r2 = client->Calculate(ctx2, Add(1, 1)).get();
  EXPECT_EQ(r2.status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(TcpClient, HandshakeRefusedWithGoAway) {
  FakeServer srv;
  google::rpc::Status st;
  st.set_code(9);
  st.set_message("unsupported protocol version");
  std::string p;
  wire::AppendU32(p, 0);
  p += st.SerializeAsString();
  srv.Send(Kind::kGoAway, 0, 0, p);
  try {
    TcpClient::Adopt(srv.client_fd(), {});
    FAIL() << "handshake accepted after GOAWAY";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.status().error_code(), grpc::StatusCode::UNAVAILABLE);
    google::rpc::Status details;
    ASSERT_TRUE(details.ParseFromString(e.status().error_details()));
    EXPECT_EQ(details.code(), 9);
  }
}

TEST(TcpClient, HandshakeWithClosedPeer) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  ::close(sv[0]);
  try {
    TcpClient::Adopt(sv[1], {});
    FAIL() << "connected to a closed peer";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.status().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
}

}  // namespace
}  // namespace calc
