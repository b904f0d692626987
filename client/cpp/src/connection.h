// Internal: one raw TCP connection (detail::Connection), the unit a
// TcpClient balances over.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "calc/tcp_client.h"
#include "socket.h"

namespace calc::detail {

// CancelHandle links a CallContext to the attempt of its call in flight.
struct CancelHandle {
  std::mutex mu;
  bool cancelled = false;
  std::weak_ptr<Connection> conn;  // the current attempt's connection
  uint32_t id = 0;                 // and call id
  std::weak_ptr<Balancer> balancer;  // woken by TryCancel while the call waits for a connection
};

// CallSpec is what a call takes from its CallContext when it starts; every
// attempt of the call uses it (the deadline is kept across retries).
struct CallSpec {
  std::optional<Clock::time_point> deadline;
  wire::Metadata metadata;
  std::shared_ptr<CancelHandle> cancel;
};

struct CallState {
  uint32_t id = 0;
  bool streaming = false;
  std::optional<Clock::time_point> deadline;
  bool done = false;
  grpc::Status status;
  bool safe_to_retry = false;
  bool cancel_sent = false;
  std::function<void(Result<std::string>&&)> on_done;  // unary calls
  std::deque<std::string> inbox;                        // streaming calls
  bool half_closed = false;
  std::condition_variable cv;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // Connection runs the protocol over sock. on_change, if set, runs
  // (without locks held) when a GOAWAY arrives and when the connection
  // closes.
  Connection(std::unique_ptr<Socket> sock, const TcpClient::Options& opts, std::function<void()> on_change);
  ~Connection();

  void Start();
  // WaitHandshake waits until deadline for SETTINGS; on failure it shuts
  // the connection down and throws RpcError.
  void WaitHandshake(Clock::time_point deadline);

  // StartCall registers a call and queues its REQUEST. When the call cannot
  // start it returns nullptr and fills *refused.
  std::shared_ptr<CallState> StartCall(const CallSpec& spec, std::string_view method, bool streaming,
                                       std::string_view message, std::function<void(Result<std::string>&&)> on_done,
                                       Result<std::string>* refused);
  void CancelCall(uint32_t id);
  bool SendMessage(const std::shared_ptr<CallState>& call, std::string_view message);
  bool SendHalfClose(const std::shared_ptr<CallState>& call);
  bool ReadMessage(const std::shared_ptr<CallState>& call, std::string* message);
  grpc::Status WaitFinish(const std::shared_ptr<CallState>& call);
  void Abandon(const std::shared_ptr<CallState>& call);
  bool SafeToRetry(const std::shared_ptr<CallState>& call) const {
    std::lock_guard lk(mu_);
    return call->done && call->safe_to_retry;
  }
  std::future<std::chrono::nanoseconds> Ping();

  wire::Settings settings() const {
    std::lock_guard lk(mu_);
    return settings_;
  }
  bool draining() const {
    std::lock_guard lk(mu_);
    return goaway_.has_value();
  }
  bool closed() const {
    std::lock_guard lk(mu_);
    return closed_;
  }
  // usable reports that new calls can start: no GOAWAY, not closed.
  bool usable() const {
    std::lock_guard lk(mu_);
    return !closed_ && !goaway_;
  }
  // why_unusable says why usable() is false.
  std::string why_unusable() const;

  // Shutdown fails every call with reason and shuts the socket down; Close
  // also joins the threads and frees the socket.
  void Shutdown(const grpc::Status& reason);
  void Close();

 private:
  // Completion is work to run once the connection lock is released: a
  // unary call's callback, or on_change.
  using Completion = std::function<void()>;

  void ReaderLoop();
  void WriterLoop();
  void HandleFrame(wire::Frame& f, std::vector<Completion>& done);
  void CompleteLocked(const std::shared_ptr<CallState>& call, grpc::Status status, bool safe_to_retry,
                      std::string value, std::vector<Completion>& done);
  void ExpireDeadlinesLocked(Clock::time_point now, std::vector<Completion>& done);
  void SendCancelLocked(CallState& call);
  void EnqueueLocked(wire::Kind kind, uint8_t flags, uint32_t id, std::string_view payload);
  void Wake();
  static void RunCompletions(std::vector<Completion>& done);
  [[noreturn]] static void ProtocolError(const std::string& what);

  std::unique_ptr<Socket> sock_;
  const int fd_;
  int wake_r_ = -1, wake_w_ = -1;
  const TcpClient::Options opts_;
  const std::function<void()> on_change_;

  mutable std::mutex mu_;
  std::condition_variable writer_cv_, space_cv_, handshake_cv_;
  std::string queue_;  // whole frames waiting for the writer
  bool closed_ = false;
  grpc::Status close_reason_;
  // write_error_ is the writer's failure, left for the reader to report
  // unless what is still to be read says more (a TLS alert, a GOAWAY).
  std::optional<grpc::Status> write_error_;
  bool have_settings_ = false;
  wire::Settings settings_;
  std::optional<wire::GoAway> goaway_;
  std::string goaway_details_;  // the GOAWAY's status, serialized
  std::map<uint32_t, std::shared_ptr<CallState>> calls_;
  std::set<std::pair<Clock::time_point, uint32_t>> deadlines_;
  std::unordered_map<std::string, uint32_t> refs_;
  uint64_t next_id_ = 1;
  uint32_t next_ref_ = 1;
  struct PingWait {
    Clock::time_point sent;
    std::promise<std::chrono::nanoseconds> promise;
  };
  std::map<uint64_t, PingWait> pings_;
  uint64_t next_ping_ = 1;
  std::optional<Clock::duration> keepalive_;
  Clock::time_point next_keepalive_ = Clock::time_point::max();
  Clock::time_point reader_wake_at_ = Clock::time_point::max();
  std::thread reader_, writer_;
  std::thread::id reader_id_;  // reader_'s, kept after a detach
  std::once_flag close_once_;
};

grpc::Status MakeStatus(grpc::StatusCode code, std::string message, std::string details = "");

}  // namespace calc::detail
