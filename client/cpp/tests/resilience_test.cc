// Reconnect, endpoints, round robin and retries, against real calcd
// processes (SIGKILLed and restarted on the same port by their PID) and
// against scripted raw TCP servers on loopback for what calcd will not do
// on cue (a GOAWAY refusing every call, a connection lost mid-call). Every
// wait is a bounded loop.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <iostream>
#include <list>
#include <mutex>
#include <thread>

#include "calc/status_details.h"
#include "calc/tcp_client.h"
#include "calcd_process.h"

namespace calc {
namespace {

using calculator::v1::CalculateRequest;
using calculator::v1::CalculateResponse;
using grpc::StatusCode;
using std::chrono::milliseconds;
using testing::Calcd;
using testing::Listener;

CalculateRequest Add(int64_t a, int64_t b) {
  CalculateRequest r;
  r.set_operator_(calculator::v1::OPERATOR_ADD);
  r.set_lhs(a);
  r.set_rhs(b);
  return r;
}

// FastOptions reconnect within milliseconds (loopback tests).
TcpClient::Options FastOptions() {
  TcpClient::Options o;
  o.connect_timeout = milliseconds(5000);
  o.backoff = Backoff{milliseconds(10), 1.6, 0.2, milliseconds(200)};
  o.retry_backoff = Backoff{milliseconds(10), 1.6, 0.2, milliseconds(100)};
  return o;
}

Result<CalculateResponse> Call(TcpClient& c, int64_t a, milliseconds timeout = milliseconds(5000)) {
  CallContext ctx;
  ctx.set_timeout(timeout);
  return c.Calculate(ctx, Add(a, a)).get();
}

// WaitUntil polls cond every 10 ms, 10 s at most; it reports cond().
bool WaitUntil(const std::function<bool()>& cond) {
  for (int i = 0; i < 1000; i++) {
    if (cond()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return cond();
}

bool AllReady(const TcpClient& c) {
  for (const auto& e : c.endpoints()) {
    if (e.state != ConnectivityState::kReady) return false;
  }
  return true;
}

// ---- a scripted raw TCP server ------------------------------------------------------------

// FakeConn is the server end of one accepted connection; reads wait 5 s
// at most.
class FakeConn {
 public:
  explicit FakeConn(int fd) : fd_(fd) {}
  int fd() const { return fd_; }

  // Greet reads the client's preface and sends SETTINGS.
  bool Greet() {
    if (!Fill(wire::kPrefaceSize)) return false;
    if (wire::ParsePreface(pending_.substr(0, wire::kPrefaceSize)) != 1) return false;
    dec_.Feed(pending_.substr(wire::kPrefaceSize));
    pending_.clear();
    std::string p;
    wire::AppendSettings(p, {});
    return Send(wire::Kind::kSettings, 0, p);
  }

  // ReadRequest reads frames until a REQUEST; false at the end or after 5 s.
  bool ReadRequest(wire::Frame* f, wire::RequestHeader* h) {
    for (;;) {
      while (auto next = dec_.Next()) {
        if (next->kind != static_cast<uint8_t>(wire::Kind::kRequest)) continue;
        *f = *next;
        wire::ParseRequestHeader(f->flags, f->payload, h);
        return true;
      }
      char buf[4096];
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 5000) != 1) return false;
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) return false;
      dec_.Feed(buf, static_cast<size_t>(n));
    }
  }

  // GoAway refuses every call above last.
  void GoAway(uint32_t last, const std::string& why) {
    google::rpc::Status st;
    st.set_code(static_cast<int>(StatusCode::UNAVAILABLE));
    st.set_message(why);
    std::string p;
    wire::AppendU32(p, last);
    p += st.SerializeAsString();
    Send(wire::Kind::kGoAway, 0, p);
  }

  bool Send(wire::Kind kind, uint32_t id, std::string_view payload) {
    std::string b;
    wire::AppendFrame(b, kind, 0, id, payload);
    return ::send(fd_, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size());
  }

 private:
  bool Fill(size_t n) {
    while (pending_.size() < n) {
      char buf[4096];
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 5000) != 1) return false;
      ssize_t r = ::read(fd_, buf, sizeof buf);
      if (r <= 0) return false;
      pending_.append(buf, static_cast<size_t>(r));
    }
    return true;
  }

  int fd_;
  std::string pending_;
  wire::FrameDecoder dec_;
};

// FakeServer accepts connections on 127.0.0.1 and runs handler on each,
// on its own thread; the connection is closed when handler returns. The
// destructor stops it and joins every thread.
class FakeServer {
 public:
  explicit FakeServer(std::function<void(FakeConn&)> handler) : handler_(std::move(handler)) {
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~FakeServer() {
    stop_ = true;
    acceptor_.join();
    {
      std::lock_guard lk(mu_);
      for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
    }
    for (auto& t : conns_) t.join();
  }
  const std::string& addr() const { return listener_.addr(); }

 private:
  void Accept() {
    while (!stop_) {
      pollfd p{listener_.fd(), POLLIN, 0};
      if (::poll(&p, 1, 20) != 1) continue;
      int fd = ::accept4(listener_.fd(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard lk(mu_);
      open_.push_back(fd);
      conns_.emplace_back([this, fd] {
        FakeConn c(fd);
        handler_(c);
        std::lock_guard lk2(mu_);
        open_.remove(fd);
        ::close(fd);
      });
    }
  }

  Listener listener_;
  std::function<void(FakeConn&)> handler_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::list<int> open_;
  std::list<std::thread> conns_;
  std::thread acceptor_;
};

// ---- against calcd -----------------------------------------------------------------------------

TEST(Resilience, ReconnectsAfterTheServerIsKilledAndRestarted) {
  auto srv = std::make_unique<Calcd>(std::vector<std::string>{});
  const std::string addr = srv->tcp();
  auto c = TcpClient::Connect(addr, FastOptions());
  for (int i = 1; i <= 10; i++) {
    auto r = Call(*c, i);
    ASSERT_TRUE(r.ok()) << r.status.error_message();
    EXPECT_EQ(r.value.result(), 2 * i);
  }
  srv->Kill();  // SIGKILL: no GOAWAY, the connection just ends
  ASSERT_TRUE(WaitUntil([&] { return c->state() == ConnectivityState::kTransientFailure; }))
      << ConnectivityStateName(c->state());
  auto down = Call(*c, 1);
  EXPECT_EQ(down.status.error_code(), StatusCode::UNAVAILABLE);  // fails fast while nothing listens
  // "connect: Connection refused", or a reset if an attempt reached the listener as calcd died.
  EXPECT_EQ(down.status.error_message().rfind("no server ready: " + addr + ": ", 0), 0u) << down.status.error_message();

  srv = std::make_unique<Calcd>(std::vector<std::string>{}, addr);  // the same port
  auto start = Clock::now();
  Result<CalculateResponse> up;
  up.status = grpc::Status(StatusCode::UNAVAILABLE, "not called yet");
  for (int i = 0; i < 500 && !up.ok(); i++) {  // the client reconnects by itself
    up = Call(*c, 21);
    if (!up.ok()) std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_TRUE(up.ok()) << up.status.error_message();
  std::cout << "calls succeed again " << std::chrono::duration_cast<milliseconds>(Clock::now() - start).count()
            << " ms after the restart\n";
  EXPECT_EQ(up.value.result(), 42);
  for (int i = 1; i <= 10; i++) EXPECT_TRUE(Call(*c, i).ok());
  auto eps = c->endpoints();
  ASSERT_EQ(eps.size(), 1u);
  EXPECT_EQ(eps[0].connects, 2u);
  EXPECT_EQ(eps[0].state, ConnectivityState::kReady);
}

TEST(Resilience, WaitForReadyCallOutlivesARestart) {
  auto srv = std::make_unique<Calcd>(std::vector<std::string>{});
  const std::string addr = srv->tcp();
  auto opts = FastOptions();
  opts.wait_for_ready = true;
  auto c = TcpClient::Connect(addr, opts);
  ASSERT_TRUE(Call(*c, 1).ok());
  srv->Kill();
  ASSERT_TRUE(WaitUntil([&] { return c->state() == ConnectivityState::kTransientFailure; }));
  CallContext ctx;
  ctx.set_timeout(milliseconds(20000));
  auto pending = c->Calculate(ctx, Add(4, 5));  // waits for a READY connection
  EXPECT_EQ(pending.wait_for(milliseconds(50)), std::future_status::timeout);
  srv = std::make_unique<Calcd>(std::vector<std::string>{}, addr);
  ASSERT_EQ(pending.wait_for(std::chrono::seconds(15)), std::future_status::ready);
  auto r = pending.get();
  ASSERT_TRUE(r.ok()) << r.status.error_message();
  EXPECT_EQ(r.value.result(), 9);
}

TEST(Resilience, TwoEndpointsRoundRobinThenFailover) {
  auto a = std::make_unique<Calcd>(std::vector<std::string>{});
  Calcd b({});
  auto opts = FastOptions();
  opts.retry_idempotent = true;  // calls lost with a's connection go to b
  auto c = TcpClient::Create(a->tcp() + "," + b.tcp(), opts);
  ASSERT_TRUE(WaitUntil([&] { return AllReady(*c); }));
  for (int i = 1; i <= 100; i++) {
    auto r = Call(*c, i);
    ASSERT_TRUE(r.ok()) << r.status.error_message();
    EXPECT_EQ(r.value.result(), 2 * i);
  }
  auto eps = c->endpoints();
  ASSERT_EQ(eps.size(), 2u);
  EXPECT_EQ(eps[0].address, a->tcp());
  EXPECT_EQ(eps[0].calls, 50u);
  EXPECT_EQ(eps[1].calls, 50u);

  a->Kill();
  for (int i = 1; i <= 100; i++) {
    auto r = Call(*c, i);
    ASSERT_TRUE(r.ok()) << "call " << i << " after a died: " << r.status.error_message();
  }
  eps = c->endpoints();
  EXPECT_NE(eps[0].state, ConnectivityState::kReady);
  EXPECT_GE(eps[1].calls, 150u);
  EXPECT_EQ(c->state(), ConnectivityState::kReady);
}

// ---- against scripted servers -----------------------------------------------------------------------

TEST(Resilience, CallsAGoAwayRefusedAreMadeAgainOnAnotherEndpoint) {
  std::atomic<int> refused{0};
  FakeServer goaway([&](FakeConn& conn) {
    if (!conn.Greet()) return;
    wire::Frame f;
    wire::RequestHeader h;
    if (!conn.ReadRequest(&f, &h)) return;
    refused++;
    conn.GoAway(f.id - 1, "going away");  // the call was never processed
  });
  Calcd real({});
  auto c = TcpClient::Create(goaway.addr() + "," + real.tcp(), FastOptions());
  ASSERT_TRUE(WaitUntil([&] { return AllReady(*c); }));
  for (int i = 1; i <= 20; i++) {
    auto r = Call(*c, i);
    ASSERT_TRUE(r.ok()) << "call " << i << ": " << r.status.error_message();
    EXPECT_EQ(r.value.result(), 2 * i);
  }
  EXPECT_GE(refused.load(), 1);
}

TEST(Resilience, MaxAttemptsBoundsTheRetries) {
  std::atomic<int> requests{0};
  FakeServer goaway([&](FakeConn& conn) {
    if (!conn.Greet()) return;
    wire::Frame f;
    wire::RequestHeader h;
    if (!conn.ReadRequest(&f, &h)) return;
    requests++;
    conn.GoAway(f.id - 1, "going away");  // no call comes after it on this connection
  });
  auto opts = FastOptions();
  opts.max_attempts = 3;
  auto c = TcpClient::Connect(goaway.addr(), opts);
  auto r = Call(*c, 1);
  EXPECT_EQ(r.status.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_TRUE(r.safe_to_retry);
  EXPECT_NE(r.status.error_message().find("GOAWAY"), std::string::npos) << r.status.error_message();
  EXPECT_EQ(requests.load(), 3);
}

TEST(Resilience, LostCallsAreRetriedOnlyWhenIdempotent) {
  std::atomic<int> lost{0};
  FakeServer dropper([&](FakeConn& conn) {  // reads each call, then drops the connection
    if (!conn.Greet()) return;
    wire::Frame f;
    wire::RequestHeader h;
    if (conn.ReadRequest(&f, &h)) lost++;
  });
  Calcd real({});
  const std::string target = dropper.addr() + "," + real.tcp();
  for (bool idempotent : {false, true}) {
    auto opts = FastOptions();
    opts.retry_idempotent = idempotent;
    auto c = TcpClient::Create(target, opts);
    ASSERT_TRUE(WaitUntil([&] { return AllReady(*c); }));
    auto r = Call(*c, 3);  // the first pick is the first endpoint: the dropper
    if (idempotent) {
      ASSERT_TRUE(r.ok()) << r.status.error_message();
      EXPECT_EQ(r.value.result(), 6);
    } else {
      EXPECT_EQ(r.status.error_code(), StatusCode::UNAVAILABLE);
      EXPECT_FALSE(r.safe_to_retry);
      EXPECT_EQ(r.status.error_message(), "connection closed by the server");
    }
  }
  EXPECT_EQ(lost.load(), 2);
}

TEST(Resilience, DeadlineIsKeptAcrossRetries) {
  std::mutex mu;
  std::vector<int64_t> budgets;  // each attempt's DEADLINE, microseconds
  FakeServer dropper([&](FakeConn& conn) {
    if (!conn.Greet()) return;
    wire::Frame f;
    wire::RequestHeader h;
    if (conn.ReadRequest(&f, &h)) {
      std::lock_guard lk(mu);
      budgets.push_back(h.timeout ? h.timeout->count() : -1);
    }
  });
  auto opts = FastOptions();
  opts.retry_idempotent = true;
  opts.retry_backoff = Backoff{milliseconds(40), 1, 0, milliseconds(40)};
  opts.max_attempts = 1000;  // only the deadline ends it
  auto c = TcpClient::Connect(dropper.addr(), opts);
  auto start = Clock::now();
  auto r = Call(*c, 1, milliseconds(400));
  auto took = Clock::now() - start;
  EXPECT_TRUE(r.status.error_code() == StatusCode::UNAVAILABLE ||
              r.status.error_code() == StatusCode::DEADLINE_EXCEEDED)
      << StatusCodeName(r.status.error_code()) << ": " << r.status.error_message();
  EXPECT_LT(took, std::chrono::seconds(5));
  std::lock_guard lk(mu);
  ASSERT_GE(budgets.size(), 2u);
  EXPECT_LT(budgets.size(), 11u);  // 400 ms / 40 ms between attempts
  EXPECT_LE(budgets[0], 400000);
  for (size_t i = 1; i < budgets.size(); i++) {
    EXPECT_LT(budgets[i], budgets[i - 1]) << "attempt " << i + 1 << " got a fresh deadline";
    EXPECT_GT(budgets[i], 0);
  }
}

TEST(Resilience, CloseEndsWaitingCallsAndConnectionAttempts) {
  Listener silent;  // connects, never answers: the attempt waits for SETTINGS
  auto opts = FastOptions();
  opts.connect_timeout = milliseconds(60000);
  auto c = TcpClient::Create(silent.addr(), opts);
  CallContext ctx;
  auto pending = c->Calculate(ctx, Add(1, 1));  // CONNECTING: it waits
  EXPECT_EQ(pending.wait_for(milliseconds(50)), std::future_status::timeout);
  auto start = Clock::now();
  c->Close();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  ASSERT_EQ(pending.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(pending.get().status.error_code(), StatusCode::CANCELLED);
  EXPECT_EQ(c->state(), ConnectivityState::kShutdown);
  CallContext after;
  EXPECT_EQ(c->Calculate(after, Add(1, 1)).get().status.error_code(), StatusCode::CANCELLED);
}

TEST(Resilience, CancelEndsACallWaitingForAConnection) {
  Listener silent;
  auto opts = FastOptions();
  opts.connect_timeout = milliseconds(60000);
  auto c = TcpClient::Create(silent.addr(), opts);
  CallContext ctx;
  auto pending = c->Calculate(ctx, Add(1, 1));
  ctx.TryCancel();
  ASSERT_EQ(pending.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto r = pending.get();
  EXPECT_EQ(r.status.error_code(), StatusCode::CANCELLED);
  EXPECT_EQ(r.status.error_message(), "call cancelled while waiting for a connection");
}

}  // namespace
}  // namespace calc
