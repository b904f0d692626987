// calc-bench-cpp: the C++ load client that scripts/bench-langs.sh runs (through
// client/cpp/run-bench.sh).
//
//   calc-bench-cpp --transport tcp|grpc --addr HOST:PORT --concurrency N --duration SECONDS [--warmup SECONDS]
//
// One connection: raw TCP, one calc::TcpClient to one endpoint (one
// connection); gRPC, one grpc::Channel from calc::NewGrpcChannel (one HTTP/2
// connection). N calls in flight at all times, each unary
// Calculate(ADD, lhs=i, rhs=1) with its answer checked (result == lhs+1):
//
//   - raw TCP: TcpClient's callback form (Calculate with a done callback):
//     each call's callback, on the connection's reader thread, starts the
//     next; the calls are pipelined on the one connection, paired by id;
//   - gRPC: grpc++'s callback API (stub->async()->Calculate) on the one
//     channel, the same way.
//
// A slot whose call fails stops (the run has failed: exit status 1).
//
// N=1 is strictly sequential. It warms up for --warmup seconds (default 1,
// not counted), then counts the calls that complete within --duration
// seconds; at the deadline it stops starting calls and waits at most 5 s
// for those in flight (their failures count as errors). Output: one line
// of JSON on stdout,
//
//   {"lang":"cpp","transport":"tcp","concurrency":64,"calls":123456,"errors":0,"seconds":5.001,
//    "calls_per_sec":24687.1,"p50_us":2510.0,"p99_us":6100.0}
//
// (latencies from a log-linear histogram, 1% wide buckets) and exit status 0
// when errors == 0 and calls > 0, else 1. Everything else goes to stderr.
#include <grpcpp/grpcpp.h>

#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "calc/grpc_channel.h"
#include "calc/tcp_client.h"
#include "calculator/v1/calculator.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
using calculator::v1::CalculateRequest;
using calculator::v1::CalculateResponse;

struct Args {
  std::string transport, addr;
  int concurrency = 0;
  double duration = 0, warmup = 1;
};

[[noreturn]] void Usage(const std::string& why) {
  std::cerr << why << "\nusage: calc-bench-cpp --transport tcp|grpc --addr HOST:PORT --concurrency N "
            << "--duration SECONDS [--warmup SECONDS (default 1)]\n";
  std::exit(2);
}

double Number(const std::string& flag, const std::string& v, double min) {
  char* end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !std::isfinite(d) || d < min) {
    Usage(flag + " must be a number >= " + std::to_string(min) + ", not " + v);
  }
  return d;
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  bool have_duration = false;
  for (int i = 1; i < argc; i++) {
    std::string flag = argv[i], val;
    if (auto eq = flag.find('='); eq != std::string::npos) {
      val = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (i + 1 < argc) {
      val = argv[++i];
    } else {
      Usage(flag + " needs a value");
    }
    if (flag == "--transport") {
      a.transport = val;
    } else if (flag == "--addr") {
      a.addr = val;
    } else if (flag == "--concurrency") {
      double c = Number(flag, val, 1);
      if (c != std::floor(c) || c > 1e6) Usage("--concurrency must be a whole number, not " + val);
      a.concurrency = static_cast<int>(c);
    } else if (flag == "--duration") {
      a.duration = Number(flag, val, 0.001);
      have_duration = true;
    } else if (flag == "--warmup") {
      a.warmup = Number(flag, val, 0);
    } else {
      Usage("unknown argument " + flag);
    }
  }
  if (a.transport != "tcp" && a.transport != "grpc") Usage("--transport must be tcp or grpc");
  if (a.addr.empty()) Usage("--addr is required");
  if (a.concurrency == 0) Usage("--concurrency is required");
  if (!have_duration) Usage("--duration is required");
  return a;
}

// Histogram counts latencies in nanoseconds in log-linear buckets: 64 per
// power of two (about 1% wide), lock-free.
class Histogram {
 public:
  void Add(uint64_t ns) { buckets_[Index(ns)].fetch_add(1, std::memory_order_relaxed); }
  // Quantile is the middle of the bucket holding the q-quantile, in µs.
  double QuantileMicros(double q) const {
    uint64_t total = 0;
    for (const auto& b : buckets_) total += b.load();
    if (total == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total)));
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < buckets_.size(); i++) {
      seen += buckets_[i].load();
      if (seen >= rank) return (Lower(i) + Lower(i + 1)) / 2.0 / 1000.0;
    }
    return Lower(buckets_.size()) / 1000.0;
  }

 private:
  static constexpr int kSub = 64;  // buckets per power of two (>= kSub ns)
  static size_t Index(uint64_t ns) {
    if (ns < kSub) return ns;
    int e = std::bit_width(ns) - 1;  // 2^e <= ns < 2^(e+1), e >= 6
    uint64_t sub = (ns >> (e - 6)) - kSub;
    return std::min<size_t>(kSub + (e - 6) * kSub + sub, kBuckets - 1);
  }
  static double Lower(size_t i) {
    if (i < kSub) return static_cast<double>(i);
    size_t e = (i - kSub) / kSub + 6, sub = (i - kSub) % kSub;
    return std::ldexp(static_cast<double>(kSub + sub), static_cast<int>(e) - 6);
  }
  static constexpr size_t kBuckets = kSub + 40 * kSub;  // up to 2^46 ns
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
};

// Load is the state every call shares: the phase, the counts, the
// latencies, and the count of calls in flight.
struct Load {
  std::atomic<bool> measuring{false}, stopping{false};
  std::atomic<uint64_t> calls{0}, errors{0};
  std::atomic<int64_t> next_lhs{0};
  Histogram latency;
  std::mutex mu;
  std::condition_variable idle;
  int in_flight = 0;  // under mu
  std::string first_error;  // under mu

  // Done records one call's outcome. It returns whether the caller should
  // start another: not after the deadline, and not after an error (a call
  // that fails at once completes on the thread that started it, so
  // restarting from its callback would recurse; the run has failed anyway).
  bool Done(Clock::time_point started, bool ok, const std::string& why) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started).count();
    if (!ok) {
      errors.fetch_add(1);  // during the warm-up too: an error is an error
      std::lock_guard lk(mu);
      if (first_error.empty()) first_error = why;
    } else if (measuring.load(std::memory_order_relaxed)) {
      calls.fetch_add(1, std::memory_order_relaxed);
      latency.Add(static_cast<uint64_t>(ns));
    }
    if (ok && !stopping.load()) return true;
    std::lock_guard lk(mu);
    if (--in_flight == 0) idle.notify_all();
    return false;
  }
};

std::string Check(int64_t lhs, const grpc::Status& st, const CalculateResponse& resp) {
  if (!st.ok()) return "status " + std::to_string(st.error_code()) + ": " + st.error_message();
  if (resp.result() != lhs + 1) return std::to_string(lhs) + " + 1 = " + std::to_string(resp.result());
  return "";
}

CalculateRequest Request(int64_t lhs) {
  CalculateRequest req;
  req.set_operator_(calculator::v1::OPERATOR_ADD);
  req.set_lhs(lhs);
  req.set_rhs(1);
  return req;
}

// TcpSlot keeps one call in flight on the TcpClient with its callback
// form: each call's done callback (on the connection's reader thread)
// starts the next.
class TcpSlot {
 public:
  TcpSlot(calc::TcpClient* client, Load* load) : client_(client), load_(load) {}
  void Start() {
    int64_t lhs = load_->next_lhs.fetch_add(1);
    auto started = Clock::now();
    calc::CallContext ctx;  // the call keeps what it needs of it
    client_->Calculate(ctx, Request(lhs), [this, lhs, started](calc::Result<CalculateResponse>&& r) {
      std::string why = Check(lhs, r.status, r.value);
      if (load_->Done(started, why.empty(), why)) Start();
    });
  }

 private:
  calc::TcpClient* client_;
  Load* load_;
};

// GrpcSlot keeps one call in flight on the channel with grpc++'s callback
// API: each call's callback starts the next. A call's state (its
// ClientContext, request, response) is freed in its callback, which grpc++
// allows once the callback runs.
class GrpcSlot {
 public:
  GrpcSlot(calculator::v1::CalculatorService::Stub* stub, Load* load) : stub_(stub), load_(load) {}
  void Start() {
    auto* c = new Call;
    c->lhs = load_->next_lhs.fetch_add(1);
    c->req = Request(c->lhs);
    c->started = Clock::now();
    stub_->async()->Calculate(&c->ctx, &c->req, &c->resp, [this, c](grpc::Status st) {
      std::unique_ptr<Call> own(c);
      std::string why = Check(c->lhs, st, c->resp);
      auto started = c->started;
      own.reset();
      if (load_->Done(started, why.empty(), why)) Start();
    });
  }

 private:
  struct Call {
    grpc::ClientContext ctx;
    CalculateRequest req;
    CalculateResponse resp;
    int64_t lhs = 0;
    Clock::time_point started;
  };
  calculator::v1::CalculatorService::Stub* stub_;
  Load* load_;
};

template <class Slot, class Target>
int Run(const Args& a, Target* target, Load& load) {
  std::vector<std::unique_ptr<Slot>> slots;
  for (int i = 0; i < a.concurrency; i++) slots.push_back(std::make_unique<Slot>(target, &load));
  {
    std::lock_guard lk(load.mu);
    load.in_flight = a.concurrency;
  }
  for (auto& s : slots) s->Start();
  std::this_thread::sleep_for(std::chrono::duration<double>(a.warmup));
  load.measuring = true;
  auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(a.duration));
  load.measuring = false;
  auto end = Clock::now();
  load.stopping = true;
  bool drained;
  {
    std::unique_lock lk(load.mu);
    drained = load.idle.wait_for(lk, std::chrono::seconds(5), [&] { return load.in_flight == 0; });
  }
  if (!drained) {
    std::cerr << "bench: calls still in flight 5 s after the deadline\n";
    load.errors.fetch_add(1);
  }
  {
    std::lock_guard lk(load.mu);
    if (!load.first_error.empty()) std::cerr << "bench: first error: " << load.first_error << "\n";
  }
  double seconds = std::chrono::duration<double>(end - start).count();
  uint64_t calls = load.calls.load(), errors = load.errors.load();
  char line[512];
  std::snprintf(line, sizeof line,
                "{\"lang\":\"cpp\",\"transport\":\"%s\",\"concurrency\":%d,\"calls\":%llu,\"errors\":%llu,"
                "\"seconds\":%.3f,\"calls_per_sec\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f}\n",
                a.transport.c_str(), a.concurrency, static_cast<unsigned long long>(calls),
                static_cast<unsigned long long>(errors), seconds, static_cast<double>(calls) / seconds,
                load.latency.QuantileMicros(0.5), load.latency.QuantileMicros(0.99));
  std::fputs(line, stdout);
  std::fflush(stdout);
  int rc = errors == 0 && calls > 0 ? 0 : 1;
  // Calls still in flight reference the slots: leave without tearing down.
  if (!drained) std::_Exit(rc);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = ParseArgs(argc, argv);
  Load load;
  try {
    if (a.transport == "tcp") {
      auto client = calc::TcpClient::Connect(a.addr);
      return Run<TcpSlot>(a, client.get(), load);
    }
    auto channel = calc::NewGrpcChannel(a.addr, calc::SecurityOptions{});
    if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      throw std::runtime_error("gRPC channel to " + a.addr + " not connected within 10 s");
    }
    auto stub = calculator::v1::CalculatorService::NewStub(channel);
    return Run<GrpcSlot>(a, stub.get(), load);
  } catch (const std::exception& e) {
    std::cerr << "bench: " << e.what() << "\n";
    std::printf("{\"lang\":\"cpp\",\"transport\":\"%s\",\"concurrency\":%d,\"calls\":0,\"errors\":1,\"seconds\":0,"
                "\"calls_per_sec\":0,\"p50_us\":0,\"p99_us\":0}\n",
                a.transport.c_str(), a.concurrency);
    return 1;
  }
}
