// calc::TcpClient: a client of calc's raw TCP protocol v1 (PROTOCOL.md).
//
// One TcpClient is one connection. It is thread-safe: any number of calls may
// be in flight at once, paired with their answers by call id. A reader thread
// reads frames, enforces deadlines and answers PINGs; a writer thread writes
// queued frames, coalescing them. Errors are grpc::Status values, with the
// server's google.rpc.Status in error_details() exactly as grpc++ reports it,
// so code handles both transports alike (see calc/status_details.h).
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

#include "calc/wire.h"
#include "calculator/v1/calculator.pb.h"

namespace calc {

namespace detail {
class Connection;
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

// RpcError is thrown by TcpClient::Connect (and stored in Ping futures) when
// the connection cannot be used.
class RpcError : public std::runtime_error {
 public:
  explicit RpcError(grpc::Status status);
  const grpc::Status& status() const { return status_; }

 private:
  grpc::Status status_;
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
  friend class detail::Connection;
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

class TcpClient {
 public:
  struct Options {
    // connect_timeout bounds connecting and the handshake (preface out,
    // SETTINGS in).
    std::chrono::milliseconds connect_timeout{10000};
    // Limits on what this client accepts from the server.
    uint32_t max_frame_size = wire::kDefaultMaxFrameSize;
    uint32_t max_message_size = wire::kDefaultMaxMessageSize;
    // keepalive is the PING interval; nullopt = half the server's
    // IDLE_TIMEOUT_MILLIS (no pings if that is 0); zero disables pings.
    std::optional<std::chrono::milliseconds> keepalive;
    // max_queued_bytes bounds the write queue: callers block past it
    // (frames the reader thread sends, PONG and CANCEL, never wait).
    size_t max_queued_bytes = 1 << 20;
  };

  // Connect dials host:port ("127.0.0.1:4000", "[::1]:4000",
  // "localhost:4000"), sends the preface and waits for the server's
  // SETTINGS. Throws RpcError: UNAVAILABLE if the server cannot be reached
  // or refuses (GOAWAY), DEADLINE_EXCEEDED if the handshake times out.
  static std::unique_ptr<TcpClient> Connect(const std::string& target, const Options& options);
  static std::unique_ptr<TcpClient> Connect(const std::string& target) { return Connect(target, Options()); }
  // Adopt runs the protocol over an already connected stream socket (it
  // takes ownership of fd), e.g. one end of a socketpair in tests.
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

  // ---- any method, serialized messages ------------------------------------
  // UnaryRaw starts a unary call of method ("/package.Service/Method").
  std::future<Result<std::string>> UnaryRaw(CallContext& ctx, std::string_view method, std::string_view request);
  // Unary is UnaryRaw with typed messages.
  template <class Resp>
  std::future<Result<Resp>> Unary(CallContext& ctx, std::string_view method,
                                  const google::protobuf::MessageLite& request);
  // StreamRaw opens a streaming call: REQUEST with an empty message.
  std::unique_ptr<RawStream> StreamRaw(CallContext& ctx, std::string_view method);

  // Ping sends a PING and completes with the round-trip time when the PONG
  // arrives (an RpcError if the connection closes first).
  std::future<std::chrono::nanoseconds> Ping();

  // server_settings returns the limits from the server's SETTINGS frame.
  wire::Settings server_settings() const;
  // draining reports that a GOAWAY arrived: new calls fail with UNAVAILABLE.
  bool draining() const;
  // closed reports that the connection is gone: every call fails.
  bool closed() const;

  // Close ends the connection now; calls in flight fail with CANCELLED.
  void Close();

 private:
  explicit TcpClient(std::shared_ptr<detail::Connection> conn);
  void StartUnary(CallContext& ctx, std::string_view method, std::string_view request,
                  std::function<void(Result<std::string>&&)> done);
  std::shared_ptr<detail::Connection> conn_;
};

template <class Resp>
std::future<Result<Resp>> TcpClient::Unary(CallContext& ctx, std::string_view method,
                                           const google::protobuf::MessageLite& request) {
  auto promise = std::make_shared<std::promise<Result<Resp>>>();
  auto future = promise->get_future();
  StartUnary(ctx, method, request.SerializeAsString(), [promise](Result<std::string>&& raw) {
    Result<Resp> r;
    r.status = std::move(raw.status);
    r.safe_to_retry = raw.safe_to_retry;
    if (r.status.ok() && !r.value.ParseFromString(raw.value)) {
      r.status = grpc::Status(grpc::StatusCode::INTERNAL,
                              "response message does not parse as " + r.value.GetTypeName());
    }
    promise->set_value(std::move(r));
  });
  return future;
}

}  // namespace calc
