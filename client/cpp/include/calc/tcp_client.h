// calc::TcpClient: a client of calc's raw TCP protocol v1 (PROTOCOL.md).
//
// A TcpClient keeps one connection to each endpoint of its target
// ("host:port" or "host:port,host:port,...") and reconnects by itself, with
// gRPC's connection backoff, when one is lost. Calls go round robin over the
// READY connections; a call the server never processed (above a GOAWAY's
// last accepted id, or refused before it was sent) is made again on another
// connection, within its deadline and Options::max_attempts. Over TLS
// (Options::security) it speaks TLS 1.3 with ALPN "calc/1" and sends a
// bearer token on every call.
//
// It is thread-safe: any number of calls may be in flight at once, paired
// with their answers by call id. Each connection has a reader thread (reads
// frames, enforces deadlines, answers PINGs) and a writer thread (writes
// queued frames, coalescing them). Errors are grpc::Status values, with the
// server's google.rpc.Status in error_details() exactly as grpc++ reports
// it, so code handles both transports alike (see calc/status_details.h).
//
//   auto client = calc::TcpClient::Connect("127.0.0.1:4000");
//   calc::CallContext ctx;
//   ctx.set_timeout(std::chrono::seconds(1));
//   calculator::v1::CalculateRequest req;  // operator, lhs, rhs
//   calc::Result<calculator::v1::CalculateResponse> r = client->Calculate(ctx, req).get();
//   if (r.ok()) use(r.value.result()); else report(r.status);
#pragma once

#include <grpcpp/support/status.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "calc/security.h"
#include "calc/wire.h"
#include "calculator/v1/calculator.pb.h"

namespace calc {

namespace detail {
class Balancer;
class Connection;
struct CallSpec;
struct CallState;
struct CancelHandle;
}  // namespace detail

using Clock = std::chrono::steady_clock;

inline constexpr std::string_view kCalculateMethod = "/calculator.v1.CalculatorService/Calculate";
inline constexpr std::string_view kEvaluateMethod = "/calculator.v1.CalculatorService/Evaluate";
inline constexpr std::string_view kCalculateStreamMethod = "/calculator.v1.CalculatorService/CalculateStream";

// Result is the outcome of a unary call: status, and value when status.ok().
template <class T>
struct Result {
  grpc::Status status;
  T value{};
  // safe_to_retry is true when the server never processed the call: it was
  // above a GOAWAY's last accepted id, or was refused before being sent
  // (connection draining or closed). Such a call may be retried on a new
  // connection.
  bool safe_to_retry = false;

  bool ok() const { return status.ok(); }
};

// CallContext carries a call's deadline and metadata and lets the caller
// cancel it, like grpc::ClientContext. Use one context per call.
class CallContext {
 public:
  CallContext();
  ~CallContext();
  CallContext(const CallContext&) = delete;
  CallContext& operator=(const CallContext&) = delete;

  void set_deadline(Clock::time_point deadline) { deadline_ = deadline; }
  template <class Rep, class Period>
  void set_timeout(std::chrono::duration<Rep, Period> timeout) {
    deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout);
  }
  std::optional<Clock::time_point> deadline() const { return deadline_; }

  // AddMetadata adds a key (lower-case ASCII; "-bin" keys carry binary
  // values) and value, sent in the REQUEST header.
  void AddMetadata(std::string key, std::string value);
  const wire::Metadata& metadata() const { return metadata_; }

  // TryCancel sends CANCEL for the call started with this context. The call
  // still ends with the server's final answer, normally CANCELLED (a call
  // that finished first answers normally). Before the call starts it makes
  // the call fail with CANCELLED without being sent.
  void TryCancel();

 private:
  friend class TcpClient;
  std::optional<Clock::time_point> deadline_;
  wire::Metadata metadata_;
  std::shared_ptr<detail::CancelHandle> cancel_;
};

// RawStream is one streaming call with serialized messages; Stream<> below is
// the typed form. Methods mirror grpc::ClientReaderWriter. Write and
// WritesDone may be called from one thread while Read runs on another.
class RawStream {
 public:
  ~RawStream();
  // Write sends one MESSAGE; false if the call has already ended (Finish
  // tells why). It blocks only while the connection's write queue is full.
  bool Write(std::string_view message);
  // WritesDone sends HALF_CLOSE; no Write after it.
  bool WritesDone();
  // Read blocks for the next message; false once the call has ended and
  // every received message was read.
  bool Read(std::string* message);
  // Finish waits for the call's final status.
  grpc::Status Finish();
  // safe_to_retry, after Finish: the server never processed the call (see
  // Result::safe_to_retry).
  bool safe_to_retry() const;
  uint32_t id() const;

 private:
  friend class detail::Connection;
  friend class TcpClient;
  RawStream(std::shared_ptr<detail::Connection> conn, std::shared_ptr<detail::CallState> call);
  std::shared_ptr<detail::Connection> conn_;
  std::shared_ptr<detail::CallState> call_;
};

template <class Req, class Resp>
class Stream {
 public:
  explicit Stream(std::unique_ptr<RawStream> raw) : raw_(std::move(raw)) {}
  bool Write(const Req& msg) { return raw_->Write(msg.SerializeAsString()); }
  bool WritesDone() { return raw_->WritesDone(); }
  // Read returns false at the end of the stream, or if a message does not
  // parse as Resp (Finish then reports INTERNAL).
  bool Read(Resp* msg) {
    std::string bytes;
    if (!raw_->Read(&bytes)) return false;
    if (!msg->ParseFromString(bytes)) {
      parse_error_ = true;
      return false;
    }
    return true;
  }
  grpc::Status Finish() {
    grpc::Status st = raw_->Finish();
    if (parse_error_ && st.ok()) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "response message does not parse as " + Resp().GetTypeName());
    }
    return st;
  }
  bool safe_to_retry() const { return raw_->safe_to_retry(); }
  RawStream& raw() { return *raw_; }

 private:
  std::unique_ptr<RawStream> raw_;
  bool parse_error_ = false;
};

// Backoff spaces repeated attempts as gRPC's connection backoff does: the
// wait before attempt n+1 is base_delay * multiplier^n, at most max_delay,
// spread at random by +-jitter. The defaults are gRPC's (1 s, 1.6, 0.2,
// 120 s); any positive values are accepted (tests use milliseconds).
struct Backoff {
  std::chrono::milliseconds base_delay{1000};
  double multiplier = 1.6;
  double jitter = 0.2;
  std::chrono::milliseconds max_delay{120000};
};

// BackoffDelay is the wait before attempt retries+1 under b; rnd, in
// [0, 1), picks the point in the jitter's spread (0.5 is none).
Clock::duration BackoffDelay(const Backoff& b, int retries, double rnd);

// ConnectivityState is a TcpClient's state, aggregated over its endpoints
// as gRPC's round_robin does: READY if any is, else CONNECTING if any is,
// else TRANSIENT_FAILURE; SHUTDOWN after Close.
enum class ConnectivityState { kConnecting, kReady, kTransientFailure, kShutdown };
// ConnectivityStateName returns "CONNECTING", "READY", "TRANSIENT_FAILURE"
// or "SHUTDOWN".
std::string ConnectivityStateName(ConnectivityState s);

// EndpointInfo describes one endpoint of a TcpClient (TcpClient::endpoints).
struct EndpointInfo {
  std::string address;     // HOST:PORT as in the target
  ConnectivityState state;  // CONNECTING, READY or TRANSIENT_FAILURE
  uint64_t connects = 0;   // connections made (handshake done) so far
  uint64_t calls = 0;      // call attempts started on it so far
  std::string last_error;  // why the last connection attempt failed, if one did
};

class TcpClient {
 public:
  // Options configures a TcpClient. The defaults are the documented ones.
  struct Options {
    // connect_timeout bounds one connection attempt: TCP connect, TLS
    // handshake, preface out and SETTINGS in. Connect waits about this
    // long at most.
    std::chrono::milliseconds connect_timeout{10000};
    // Limits on what this client accepts from the server.
    uint32_t max_frame_size = wire::kDefaultMaxFrameSize;
    uint32_t max_message_size = wire::kDefaultMaxMessageSize;
    // keepalive is the PING interval; nullopt = half the server's
    // IDLE_TIMEOUT_MILLIS (no pings if that is 0); zero disables pings.
    std::optional<std::chrono::milliseconds> keepalive;
    // max_queued_bytes bounds each connection's write queue: callers block
    // past it (frames the reader thread sends, PONG and CANCEL, never wait).
    size_t max_queued_bytes = 1 << 20;
    // security: TLS (tls, tls_ca, tls_cert, tls_key, tls_server_name) and
    // the bearer token sent on every call (see calc/security.h).
    SecurityOptions security;
    // backoff spaces the connection attempts to one endpoint after a
    // failed one (gRPC's numbers by default). The first attempt, and the
    // first after a READY connection is lost, start at once.
    Backoff backoff;
    // wait_for_ready makes a call that finds no READY connection wait for
    // one until its deadline, as grpc's WaitForReady(true). Without it a
    // call fails fast with UNAVAILABLE while every endpoint is in
    // TRANSIENT_FAILURE, and waits only while one is CONNECTING.
    bool wait_for_ready = false;
    // retry_idempotent retries a unary call that failed with UNAVAILABLE
    // although the server may have processed it (its connection was lost),
    // spaced by retry_backoff, within the call's deadline and max_attempts.
    // Set it only when every unary method called is idempotent, as calc's
    // are. Streams are never retried once opened.
    bool retry_idempotent = false;
    Backoff retry_backoff{std::chrono::milliseconds(100), 1.6, 0.2, std::chrono::milliseconds(1000)};
    // max_attempts bounds the attempts of one call, retries of calls the
    // server never processed included (at least 1).
    int max_attempts = 5;
  };

  // Connect starts a client for target, "HOST:PORT" ("127.0.0.1:4000",
  // "[::1]:4000", "localhost:4000") or a comma-separated list of them,
  // and waits until one endpoint is READY (connected, preface sent,
  // SETTINGS received). It throws RpcError: INVALID_ARGUMENT for a bad
  // target or options (a token in plaintext to a host that is not
  // loopback, unreadable certificate files), else, once every endpoint
  // has failed its first attempt, the last failure: UNAVAILABLE if a
  // server cannot be reached, refuses (GOAWAY) or fails the TLS handshake
  // (a wrong CA or name, a missing client certificate, no ALPN calc/1),
  // DEADLINE_EXCEEDED if connect_timeout passes first. After it returns
  // the client reconnects by itself.
  static std::unique_ptr<TcpClient> Connect(const std::string& target, const Options& options);
  static std::unique_ptr<TcpClient> Connect(const std::string& target) { return Connect(target, Options()); }
  // Create is Connect without the wait: it starts connecting to every
  // endpoint and returns; only a bad target or options throw.
  static std::unique_ptr<TcpClient> Create(const std::string& target, const Options& options);
  // Adopt runs the protocol (with TLS if options.security asks, verifying
  // tls_server_name) over an already connected stream socket (it takes
  // ownership of fd), e.g. one end of a socketpair in tests. It has that
  // one connection: no reconnect, no retry.
  static std::unique_ptr<TcpClient> Adopt(int fd, const Options& options);

  ~TcpClient();  // Close()
  TcpClient(const TcpClient&) = delete;
  TcpClient& operator=(const TcpClient&) = delete;

  // ---- calculator.v1.CalculatorService --------------------------------------
  std::future<Result<calculator::v1::CalculateResponse>> Calculate(
      CallContext& ctx, const calculator::v1::CalculateRequest& request);
  std::future<Result<calculator::v1::EvaluateResponse>> Evaluate(CallContext& ctx,
                                                                  const calculator::v1::EvaluateRequest& request);
  std::unique_ptr<Stream<calculator::v1::CalculateStreamRequest, calculator::v1::CalculateStreamResponse>>
  CalculateStream(CallContext& ctx);

  // ---- the callback form, as grpc++'s stub->async() --------------------------
  // Each starts the call and returns at once; done runs exactly once with
  // the outcome, on the thread that completes the call: normally a
  // connection's reader thread, the client's worker thread for a call that
  // waited for a connection or a retry, the thread calling Close, or the
  // calling thread itself, before the function returns, for a call that
  // fails at once (no server ready, say). So N calls can be kept in flight
  // without a thread each: start the next call from done. done must not
  // block; a call started from a reader thread never waits for space in
  // the write queue (Options::max_queued_bytes). ctx may be destroyed once
  // the function returns (TryCancel then needs it alive, as always).
  void Calculate(CallContext& ctx, const calculator::v1::CalculateRequest& request,
                 std::function<void(Result<calculator::v1::CalculateResponse>&&)> done);
  void Evaluate(CallContext& ctx, const calculator::v1::EvaluateRequest& request,
                std::function<void(Result<calculator::v1::EvaluateResponse>&&)> done);

  // ---- any method, serialized messages ------------------------------------
  // UnaryRaw starts a unary call of method ("/package.Service/Method").
  // ctx's deadline, metadata and cancel handle are taken when it starts.
  std::future<Result<std::string>> UnaryRaw(CallContext& ctx, std::string_view method, std::string_view request);
  // UnaryRaw with done is its callback form (see Calculate with done).
  void UnaryRaw(CallContext& ctx, std::string_view method, std::string_view request,
                std::function<void(Result<std::string>&&)> done);
  // Unary is UnaryRaw with typed messages.
  template <class Resp>
  std::future<Result<Resp>> Unary(CallContext& ctx, std::string_view method,
                                  const google::protobuf::MessageLite& request);
  template <class Resp>
  void Unary(CallContext& ctx, std::string_view method, const google::protobuf::MessageLite& request,
             std::function<void(Result<Resp>&&)> done);
  // StreamRaw opens a streaming call: REQUEST with an empty message. It
  // waits for a READY connection as a unary call does.
  std::unique_ptr<RawStream> StreamRaw(CallContext& ctx, std::string_view method);

  // Ping sends a PING on a READY connection and completes with the
  // round-trip time when the PONG arrives (an RpcError if there is no
  // READY connection or it closes first).
  std::future<std::chrono::nanoseconds> Ping();

  // server_settings returns the limits from the SETTINGS of the last
  // connection made.
  wire::Settings server_settings() const;
  // state returns the aggregate connectivity state.
  ConnectivityState state() const;
  // WaitReady waits until a connection is READY and returns OK; it returns
  // the last connection error once every endpoint is in
  // TRANSIENT_FAILURE, CANCELLED after Close, DEADLINE_EXCEEDED at
  // deadline.
  grpc::Status WaitReady(Clock::time_point deadline);
  // endpoints describes every endpoint, in the target's order.
  std::vector<EndpointInfo> endpoints() const;
  // draining reports that a GOAWAY arrived on the connection new calls
  // would use and no other is READY (Adopt: new calls fail UNAVAILABLE;
  // otherwise they wait for the reconnect).
  bool draining() const;
  // closed reports that Close ran or, for Adopt, that the connection is
  // gone: every call fails.
  bool closed() const;

  // Close ends every connection now and stops reconnecting; calls in
  // flight fail with CANCELLED.
  void Close();

 private:
  explicit TcpClient(std::shared_ptr<detail::Balancer> balancer);
  // SpecFrom takes what a call needs from ctx, the token's metadata first.
  detail::CallSpec SpecFrom(CallContext& ctx) const;
  void StartUnary(CallContext& ctx, std::string_view method, std::string_view request,
                  std::function<void(Result<std::string>&&)> done);
  std::shared_ptr<detail::Balancer> balancer_;
};

template <class Resp>
void TcpClient::Unary(CallContext& ctx, std::string_view method, const google::protobuf::MessageLite& request,
                      std::function<void(Result<Resp>&&)> done) {
  StartUnary(ctx, method, request.SerializeAsString(), [done = std::move(done)](Result<std::string>&& raw) {
    Result<Resp> r;
    r.status = std::move(raw.status);
    r.safe_to_retry = raw.safe_to_retry;
    if (r.status.ok() && !r.value.ParseFromString(raw.value)) {
      r.status = grpc::Status(grpc::StatusCode::INTERNAL,
                              "response message does not parse as " + r.value.GetTypeName());
    }
    done(std::move(r));
  });
}

template <class Resp>
std::future<Result<Resp>> TcpClient::Unary(CallContext& ctx, std::string_view method,
                                           const google::protobuf::MessageLite& request) {
  auto promise = std::make_shared<std::promise<Result<Resp>>>();
  auto future = promise->get_future();
  Unary<Resp>(ctx, method, request, [promise](Result<Resp>&& r) { promise->set_value(std::move(r)); });
  return future;
}

}  // namespace calc
