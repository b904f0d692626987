// TcpClient: endpoints kept connected (one thread each, reconnecting with
// backoff), round robin over the READY connections, and the retries of
// calls the server never processed (or, with retry_idempotent, lost).
#include "calc/tcp_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <list>
#include <random>

#include "calc/status_details.h"
#include "connection.h"
#include "socket.h"

namespace calc {

using grpc::StatusCode;
using std::chrono::milliseconds;

Clock::duration BackoffDelay(const Backoff& b, int retries, double rnd) {
  double d = std::chrono::duration<double>(b.base_delay).count();
  double max = std::chrono::duration<double>(b.max_delay).count();
  for (; retries > 0 && d < max; retries--) d *= b.multiplier;
  d = std::min(d, max);
  d *= 1 + b.jitter * (rnd * 2 - 1);
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(std::max(d, 0.0)));
}

std::string ConnectivityStateName(ConnectivityState s) {
  switch (s) {
    case ConnectivityState::kConnecting:
      return "CONNECTING";
    case ConnectivityState::kReady:
      return "READY";
    case ConnectivityState::kTransientFailure:
      return "TRANSIENT_FAILURE";
    case ConnectivityState::kShutdown:
      return "SHUTDOWN";
  }
  return "UNKNOWN";
}

namespace detail {

namespace {

struct Address {
  std::string address, host, port;
};

// ParseTarget splits "HOST:PORT[,HOST:PORT...]"; errors are INVALID_ARGUMENT.
std::vector<Address> ParseTarget(const std::string& target) {
  auto bad = [&](const std::string& why) {
    return RpcError(grpc::Status(StatusCode::INVALID_ARGUMENT, "target \"" + target + "\": " + why));
  };
  if (target.find("://") != std::string::npos) throw bad("want HOST:PORT or HOST:PORT,HOST:PORT,... (no scheme)");
  std::vector<Address> out;
  size_t start = 0;
  for (;;) {
    size_t comma = target.find(',', start);
    std::string a = target.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    a.erase(0, a.find_first_not_of(" \t"));
    a.erase(a.find_last_not_of(" \t") + 1);
    auto colon = a.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == a.size()) throw bad("\"" + a + "\" is not HOST:PORT");
    std::string host = a.substr(0, colon), port = a.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty() || (host.find(':') != std::string::npos && a.front() != '[')) {
      throw bad("\"" + a + "\" is not HOST:PORT (write an IPv6 address as [::1]:4000)");
    }
    if (std::none_of(out.begin(), out.end(), [&](const Address& o) { return o.address == a; })) {
      out.push_back({a, host, port});
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

double Uniform(std::mt19937_64& rng) { return std::uniform_real_distribution<double>(0, 1)(rng); }

}  // namespace

// Endpoint is one address of the target and its connections.
struct Endpoint {
  Address addr;
  ConnectivityState state = ConnectivityState::kConnecting;
  std::shared_ptr<Connection> conn;              // while READY (Adopt: always)
  std::shared_ptr<Connection> connecting;        // during an attempt's handshake
  std::vector<std::shared_ptr<Connection>> old;  // got GOAWAY or closed; may still answer accepted calls
  uint64_t connects = 0, calls = 0;
  std::string last_error;
  std::thread thread;
};

// UnaryTask is one unary call across its attempts.
struct UnaryTask {
  CallSpec spec;
  std::string method, request;
  std::function<void(Result<std::string>&&)> done;
  int attempts = 0;  // attempts started
  int retries = 0;   // retries after a possibly processed failure (retry_backoff's index)
  Clock::time_point not_before{};
  std::optional<grpc::Status> last;  // the last attempt's failure
};

class Balancer : public std::enable_shared_from_this<Balancer> {
 public:
  Balancer(const TcpClient::Options& opts, std::shared_ptr<TlsContext> tls, bool adopted)
      : opts_(opts), tls_(std::move(tls)), adopted_(adopted), rng_(std::random_device{}()) {
    opts_.max_attempts = std::max(opts_.max_attempts, 1);
    int p[2];
    if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
      throw RpcError(MakeStatus(StatusCode::INTERNAL, std::string("pipe: ") + std::strerror(errno)));
    }
    cancel_r_ = p[0];
    cancel_w_ = p[1];
  }
  ~Balancer() {
    Close();
    ::close(cancel_r_);
    ::close(cancel_w_);
  }

  const TcpClient::Options& options() const { return opts_; }

  // Start starts a thread per endpoint and the retry worker.
  void Start(const std::vector<Address>& addrs) {
    std::lock_guard lk(mu_);
    for (const auto& a : addrs) {
      auto ep = std::make_unique<Endpoint>();
      ep->addr = a;
      endpoints_.push_back(std::move(ep));
    }
    for (auto& ep : endpoints_) {
      ep->thread = std::thread([this, e = ep.get()] {
        BlockSigpipe();  // it runs TLS handshakes
        RunEndpoint(e);
      });
    }
    worker_ = std::thread([this] { RunWorker(); });
  }

  // StartAdopted makes conn, handshake done, the one connection.
  void StartAdopted(std::shared_ptr<Connection> conn) {
    std::lock_guard lk(mu_);
    auto ep = std::make_unique<Endpoint>();
    ep->addr.address = "adopted socket";
    ep->state = ConnectivityState::kReady;
    ep->conn = std::move(conn);
    ep->connects = 1;
    settings_ = ep->conn->settings();
    endpoints_.push_back(std::move(ep));
  }

  // Notifier is the on_change of every connection: it wakes the waiters.
  std::function<void()> Notifier() {
    return [weak = weak_from_this()] {
      if (auto b = weak.lock()) b->Notify();
    };
  }

  void Notify() {
    { std::lock_guard lk(mu_); }
    changed_.notify_all();
  }

  void StartUnary(std::shared_ptr<UnaryTask> t) {
    Pick p;
    {
      std::lock_guard lk(mu_);
      p = PickLocked(true);
      if (p.wait) {
        queue_.push_back(std::move(t));
        changed_.notify_all();
        return;
      }
    }
    if (p.conn) {
      Attempt(std::move(t), std::move(p.conn));
    } else {
      Finish(*t, p.error, false);
    }
  }

  // OpenStream starts a streaming call on a READY connection, waiting for
  // one as a unary call does; a start the server would never see is made
  // again on another. It returns the call and its connection, or the
  // failure in *failed.
  std::pair<std::shared_ptr<Connection>, std::shared_ptr<CallState>> OpenStream(const CallSpec& spec,
                                                                              std::string_view method,
                                                                              Result<std::string>* failed) {
    for (int attempt = 1;; attempt++) {
      Pick p;
      {
        std::unique_lock lk(mu_);
        for (;;) {
          if (Cancelled(spec)) {
            p.error = MakeStatus(StatusCode::CANCELLED, "call cancelled before it started");
            break;
          }
          if (spec.deadline && *spec.deadline <= Clock::now()) {
            p.error = MakeStatus(StatusCode::DEADLINE_EXCEEDED, "deadline exceeded while waiting for a connection");
            break;
          }
          p = PickLocked(true);
          if (!p.wait) break;
          if (spec.deadline) {
            changed_.wait_until(lk, *spec.deadline);
          } else {
            changed_.wait(lk);
          }
        }
      }
      if (!p.conn) {
        failed->status = p.error;
        failed->safe_to_retry = false;
        return {};
      }
      auto call = p.conn->StartCall(spec, method, true, {}, nullptr, failed);
      if (call) return {p.conn, call};
      bool retry = failed->status.error_code() == StatusCode::UNAVAILABLE && failed->safe_to_retry && !adopted_ &&
                   attempt < opts_.max_attempts;
      if (!retry) return {};
    }
  }

  std::future<std::chrono::nanoseconds> Ping() {
    Pick p;
    {
      std::lock_guard lk(mu_);
      p = PickLocked(false);
      if (p.wait) p.error = MakeStatus(StatusCode::UNAVAILABLE, "no connection READY yet: " + StateNameLocked());
    }
    if (p.conn) return p.conn->Ping();
    std::promise<std::chrono::nanoseconds> promise;
    promise.set_exception(std::make_exception_ptr(RpcError(p.error)));
    return promise.get_future();
  }

  wire::Settings settings() const {
    std::lock_guard lk(mu_);
    return settings_;
  }

  ConnectivityState state() const {
    std::lock_guard lk(mu_);
    return StateLocked();
  }

  grpc::Status WaitReady(Clock::time_point deadline) {
    std::unique_lock lk(mu_);
    for (;;) {
      switch (StateLocked()) {
        case ConnectivityState::kReady:
          return grpc::Status::OK;
        case ConnectivityState::kShutdown:
          return MakeStatus(StatusCode::CANCELLED, "client closed");
        case ConnectivityState::kTransientFailure:
          return last_error_;
        case ConnectivityState::kConnecting:
          break;
      }
      if (changed_.wait_until(lk, deadline) == std::cv_status::timeout && Clock::now() >= deadline) {
        if (StateLocked() == ConnectivityState::kReady) return grpc::Status::OK;
        std::string why = last_error_.ok() ? "" : " (last error: " + last_error_.error_message() + ")";
        return MakeStatus(StatusCode::DEADLINE_EXCEEDED, "no connection READY within the connect timeout" + why);
      }
    }
  }

  std::vector<EndpointInfo> endpoints() const {
    std::lock_guard lk(mu_);
    std::vector<EndpointInfo> out;
    for (const auto& ep : endpoints_) {
      EndpointInfo i;
      i.address = ep->addr.address;
      i.state = EndpointStateLocked(*ep);
      i.connects = ep->connects;
      i.calls = ep->calls;
      i.last_error = ep->last_error;
      out.push_back(std::move(i));
    }
    return out;
  }

  bool draining() const {
    std::lock_guard lk(mu_);
    if (adopted_) return endpoints_[0]->conn->draining();
    if (StateLocked() == ConnectivityState::kReady) return false;
    for (const auto& ep : endpoints_) {
      auto last = ep->conn ? ep->conn : ep->old.empty() ? nullptr : ep->old.back();
      if (last && last->draining()) return true;
    }
    return false;
  }

  bool closed() const {
    std::lock_guard lk(mu_);
    return closed_ || (adopted_ && endpoints_[0]->conn->closed());
  }

  void Close() {
    std::vector<std::shared_ptr<Connection>> conns, connecting;
    std::deque<std::shared_ptr<UnaryTask>> queued;
    {
      std::lock_guard lk(mu_);
      if (!closed_) {
        closed_ = true;
        for (auto& ep : endpoints_) {
          if (ep->conn) conns.push_back(ep->conn);
          if (ep->connecting) connecting.push_back(ep->connecting);
          conns.insert(conns.end(), ep->old.begin(), ep->old.end());
        }
        queued.swap(queue_);
        changed_.notify_all();
      }
    }
    char b = 1;
    [[maybe_unused]] auto n = ::write(cancel_w_, &b, 1);  // wakes Dial and StartTls
    for (auto& c : connecting) c->Shutdown(MakeStatus(StatusCode::CANCELLED, "client closed"));  // wakes WaitHandshake
    // Shut the connections down before joining: the worker may be waiting
    // for room in one's write queue.
    for (auto& c : conns) c->Shutdown(MakeStatus(StatusCode::CANCELLED, "connection closed by the client"));
    std::call_once(join_once_, [&] {
      std::vector<std::thread*> threads{&worker_};
      for (auto& ep : endpoints_) threads.push_back(&ep->thread);
      for (std::thread* t : threads) {
        if (!t->joinable()) continue;
        if (t->get_id() == std::this_thread::get_id()) {
          t->detach();  // Close from a callback run on that thread: it sees closed_ and ends
        } else {
          t->join();
        }
      }
    });
    for (auto& c : conns) c->Close();
    for (auto& t : queued) Finish(*t, MakeStatus(StatusCode::CANCELLED, "client closed"), false);
  }

 private:
  // Pick is a connection for a call, or wait (none READY yet), or error.
  struct Pick {
    std::shared_ptr<Connection> conn;
    bool wait = false;
    grpc::Status error;
  };

  // PickLocked takes the next READY connection round robin (counting the
  // call on its endpoint when count), else says wait while an endpoint is
  // CONNECTING (or always, with wait_for_ready), else fails UNAVAILABLE
  // with the last connection error.
  Pick PickLocked(bool count) {
    Pick p;
    if (closed_) {
      p.error = MakeStatus(StatusCode::CANCELLED, "client closed");
      return p;
    }
    if (adopted_) {  // its one connection refuses calls itself once gone
      if (count) endpoints_[0]->calls++;
      p.conn = endpoints_[0]->conn;
      return p;
    }
    std::vector<Endpoint*> ready;
    for (auto& ep : endpoints_) {
      if (EndpointStateLocked(*ep) == ConnectivityState::kReady) ready.push_back(ep.get());
    }
    if (!ready.empty()) {
      Endpoint* ep = ready[next_++ % ready.size()];
      if (count) ep->calls++;
      p.conn = ep->conn;
      return p;
    }
    if (opts_.wait_for_ready || StateLocked() == ConnectivityState::kConnecting) {
      p.wait = true;
      return p;
    }
    p.error = MakeStatus(StatusCode::UNAVAILABLE, "no server ready: " + last_error_.error_message());
    return p;
  }

  // EndpointStateLocked is ep's state, READY only while its connection
  // takes calls (a GOAWAY makes it CONNECTING until its thread sees).
  ConnectivityState EndpointStateLocked(const Endpoint& ep) const {
    if (ep.state != ConnectivityState::kReady) return ep.state;
    if (ep.conn && ep.conn->usable()) return ConnectivityState::kReady;
    return adopted_ ? ConnectivityState::kTransientFailure : ConnectivityState::kConnecting;
  }

  ConnectivityState StateLocked() const {
    if (closed_) return ConnectivityState::kShutdown;
    bool connecting = false;
    for (const auto& ep : endpoints_) {
      auto s = EndpointStateLocked(*ep);
      if (s == ConnectivityState::kReady) return s;
      connecting = connecting || s == ConnectivityState::kConnecting;
    }
    return connecting ? ConnectivityState::kConnecting : ConnectivityState::kTransientFailure;
  }

  std::string StateNameLocked() const { return ConnectivityStateName(StateLocked()); }

  static bool Cancelled(const CallSpec& spec) {
    std::lock_guard lk(spec.cancel->mu);
    return spec.cancel->cancelled;
  }

  static void Finish(UnaryTask& t, grpc::Status st, bool safe_to_retry) {
    Result<std::string> r;
    r.status = std::move(st);
    r.safe_to_retry = safe_to_retry;
    t.done(std::move(r));
  }

  void Attempt(std::shared_ptr<UnaryTask> t, std::shared_ptr<Connection> conn) {
    t->attempts++;
    Result<std::string> refused;
    std::weak_ptr<Balancer> weak = weak_from_this();
    auto call = conn->StartCall(
        t->spec, t->method, false, t->request,
        [weak, t](Result<std::string>&& r) {
          if (auto b = weak.lock()) {
            b->AttemptDone(t, std::move(r));
          } else {
            t->done(std::move(r));
          }
        },
        &refused);
    if (!call) AttemptDone(t, std::move(refused));
  }

  // AttemptDone ends the call with r, or queues its next attempt: at once
  // when the server never processed it, after retry_backoff when it may
  // have (retry_idempotent), both within the deadline and max_attempts.
  void AttemptDone(const std::shared_ptr<UnaryTask>& t, Result<std::string>&& r) {
    if (!r.ok() && r.status.error_code() == StatusCode::UNAVAILABLE && !adopted_) {
      std::lock_guard lk(mu_);
      auto now = Clock::now();
      bool in_time = !t->spec.deadline || *t->spec.deadline > now;
      if (!closed_ && in_time && t->attempts < opts_.max_attempts) {
        std::optional<Clock::time_point> at;
        if (r.safe_to_retry) {
          at = now;
        } else if (opts_.retry_idempotent) {
          auto d = BackoffDelay(opts_.retry_backoff, t->retries, Uniform(rng_));
          if (!t->spec.deadline || now + d < *t->spec.deadline) {
            at = now + d;
            t->retries++;
          }
        }
        if (at) {
          t->not_before = *at;
          t->last = r.status;
          queue_.push_back(t);
          changed_.notify_all();
          return;
        }
      }
    }
    t->done(std::move(r));
  }

  // RunWorker starts the queued calls (waiting for a READY connection, or
  // for their retry's backoff) as connections become READY; it fails those
  // whose deadline passes or that are cancelled meanwhile.
  void RunWorker() {
    std::unique_lock lk(mu_);
    while (!closed_) {
      auto now = Clock::now();
      auto wake = Clock::time_point::max();
      std::vector<std::pair<std::shared_ptr<UnaryTask>, Pick>> go;
      for (auto it = queue_.begin(); it != queue_.end();) {
        const auto& t = *it;
        Pick p;
        if (Cancelled(t->spec)) {
          p.error = MakeStatus(StatusCode::CANCELLED, "call cancelled while waiting for a connection");
        } else if (t->spec.deadline && *t->spec.deadline <= now) {
          std::string why = t->last ? " (last attempt: " + StatusCodeName(t->last->error_code()) + ": " +
                                          t->last->error_message() + ")"
                                    : "";
          p.error = MakeStatus(StatusCode::DEADLINE_EXCEEDED, "deadline exceeded while waiting for a connection" + why);
        } else if (t->not_before > now) {
          wake = std::min(wake, t->not_before);
          ++it;
          continue;
        } else {
          p = PickLocked(true);
          if (p.wait) {
            if (t->spec.deadline) wake = std::min(wake, *t->spec.deadline);
            ++it;
            continue;
          }
        }
        go.emplace_back(t, std::move(p));
        it = queue_.erase(it);
      }
      if (!go.empty()) {
        lk.unlock();
        for (auto& [t, p] : go) {
          if (p.conn) {
            Attempt(t, std::move(p.conn));
          } else {
            Finish(*t, p.error, false);
          }
        }
        go.clear();
        lk.lock();
        continue;
      }
      if (wake == Clock::time_point::max()) {
        changed_.wait(lk);
      } else {
        changed_.wait_until(lk, wake);
      }
    }
  }

  // RunEndpoint keeps ep connected: it connects, waits for the
  // connection's end (GOAWAY or close), and connects again, at once after
  // a READY connection and after the backoff delay after a failure.
  void RunEndpoint(Endpoint* ep) {
    std::mt19937_64 rng(std::random_device{}());
    for (int retries = 0;;) {
      auto wait = BackoffDelay(opts_.backoff, retries, Uniform(rng));
      auto start = Clock::now();
      auto timeout = Clock::duration(opts_.connect_timeout);
      std::shared_ptr<Connection> conn;
      grpc::Status err;
      try {
        conn = ConnectOnce(ep, start + timeout);
      } catch (const RpcError& e) {
        err = e.status();
      }
      std::vector<std::shared_ptr<Connection>> gone;  // freed (threads joined) after the lock
      std::unique_lock lk(mu_);
      if (closed_) {
        lk.unlock();
        if (conn) conn->Close();
        return;
      }
      if (conn) {
        retries = 0;
        ep->state = ConnectivityState::kReady;
        ep->conn = conn;
        ep->connects++;
        settings_ = conn->settings();
        changed_.notify_all();
        changed_.wait(lk, [&] { return closed_ || !conn->usable(); });
        if (closed_) return;  // Close closes ep->conn
        for (auto it = ep->old.begin(); it != ep->old.end();) {
          if ((*it)->closed()) {
            gone.push_back(std::move(*it));
            it = ep->old.erase(it);
          } else {
            ++it;
          }
        }
        ep->old.push_back(std::move(ep->conn));
        ep->state = ConnectivityState::kConnecting;
        changed_.notify_all();
        lk.unlock();
        continue;
      }
      ep->state = ConnectivityState::kTransientFailure;  // and so through its next attempts until READY
      ep->last_error = err.error_message();
      last_error_ = MakeStatus(err.error_code(), ep->addr.address + ": " + err.error_message(), err.error_details());
      changed_.notify_all();
      retries++;
      if (changed_.wait_until(lk, start + wait, [&] { return closed_; })) return;
    }
  }

  // ConnectOnce makes one connection attempt to ep: TCP, TLS, preface and
  // SETTINGS, before deadline.
  std::shared_ptr<Connection> ConnectOnce(Endpoint* ep, Clock::time_point deadline) {
    int fd = Dial(ep->addr.host, ep->addr.port, deadline, cancel_r_);
    std::unique_ptr<Socket> sock;
    if (tls_) {
      const auto& name = opts_.security.tls_server_name.empty() ? ep->addr.host : opts_.security.tls_server_name;
      sock = StartTls(fd, *tls_, name, deadline, cancel_r_);
    } else {
      sock = std::make_unique<Socket>(fd);
    }
    auto conn = std::make_shared<Connection>(std::move(sock), opts_, Notifier());
    {
      std::lock_guard lk(mu_);
      if (closed_) throw RpcError(MakeStatus(StatusCode::CANCELLED, "client closed"));
      ep->connecting = conn;
    }
    conn->Start();
    std::exception_ptr failed;
    try {
      conn->WaitHandshake(deadline);
    } catch (...) {
      failed = std::current_exception();
    }
    {
      std::lock_guard lk(mu_);
      ep->connecting.reset();
    }
    if (failed) {
      conn->Close();
      std::rethrow_exception(failed);
    }
    return conn;
  }

  TcpClient::Options opts_;
  const std::shared_ptr<TlsContext> tls_;
  const bool adopted_;
  int cancel_r_ = -1, cancel_w_ = -1;  // written once by Close: wakes connection attempts

  mutable std::mutex mu_;
  std::condition_variable changed_;  // any state change, a queued call, Close
  bool closed_ = false;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::deque<std::shared_ptr<UnaryTask>> queue_;  // calls waiting for a connection or a retry's backoff
  size_t next_ = 0;                               // round robin's counter
  grpc::Status last_error_ = MakeStatus(StatusCode::UNAVAILABLE, "not connected yet");
  wire::Settings settings_;
  std::mt19937_64 rng_;
  std::thread worker_;
  std::once_flag join_once_;
};

}  // namespace detail

// ---- CallContext ---------------------------------------------------------------

CallContext::CallContext() : cancel_(std::make_shared<detail::CancelHandle>()) {}
CallContext::~CallContext() = default;

void CallContext::AddMetadata(std::string key, std::string value) {
  metadata_.emplace_back(std::move(key), std::move(value));
}

void CallContext::TryCancel() {
  std::shared_ptr<detail::Connection> conn;
  std::shared_ptr<detail::Balancer> balancer;
  uint32_t id;
  {
    std::lock_guard lk(cancel_->mu);
    cancel_->cancelled = true;
    conn = cancel_->conn.lock();
    balancer = cancel_->balancer.lock();
    id = cancel_->id;
  }
  if (conn && id != 0) conn->CancelCall(id);
  if (balancer) balancer->Notify();  // a call waiting for a connection ends now
}

// ---- RawStream -------------------------------------------------------------------

RawStream::RawStream(std::shared_ptr<detail::Connection> conn, std::shared_ptr<detail::CallState> call)
    : conn_(std::move(conn)), call_(std::move(call)) {}
RawStream::~RawStream() {
  if (conn_) conn_->Abandon(call_);
}
bool RawStream::Write(std::string_view message) { return conn_ && conn_->SendMessage(call_, message); }
bool RawStream::WritesDone() { return conn_ && conn_->SendHalfClose(call_); }
bool RawStream::Read(std::string* message) {
  if (!conn_) return false;
  return conn_->ReadMessage(call_, message);
}
grpc::Status RawStream::Finish() {
  if (!conn_) return call_->status;
  return conn_->WaitFinish(call_);
}
uint32_t RawStream::id() const { return call_->id; }
bool RawStream::safe_to_retry() const {
  if (!conn_) return call_->safe_to_retry;
  return conn_->SafeToRetry(call_);
}

// ---- TcpClient ---------------------------------------------------------------------

namespace {

std::shared_ptr<detail::TlsContext> TlsFor(const SecurityOptions& s) {
  return s.tls_on() ? detail::TlsContext::New(s) : nullptr;
}

}  // namespace

TcpClient::TcpClient(std::shared_ptr<detail::Balancer> balancer) : balancer_(std::move(balancer)) {}

TcpClient::~TcpClient() { Close(); }

std::unique_ptr<TcpClient> TcpClient::Create(const std::string& target, const Options& options) {
  auto addrs = detail::ParseTarget(target);
  for (const auto& a : addrs) {
    if (auto st = CheckSecurity(options.security, a.host); !st.ok()) throw RpcError(st);
  }
  auto balancer = std::make_shared<detail::Balancer>(options, TlsFor(options.security), false);
  balancer->Start(addrs);
  return std::unique_ptr<TcpClient>(new TcpClient(std::move(balancer)));
}

std::unique_ptr<TcpClient> TcpClient::Connect(const std::string& target, const Options& options) {
  // Every first attempt ends within connect_timeout with its own error;
  // the second is only a guard.
  auto deadline = Clock::now() + options.connect_timeout + std::chrono::seconds(1);
  auto client = Create(target, options);
  if (auto st = client->WaitReady(deadline); !st.ok()) throw RpcError(st);
  return client;
}

std::unique_ptr<TcpClient> TcpClient::Adopt(int fd, const Options& options) {
  auto deadline = Clock::now() + options.connect_timeout;
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  std::unique_ptr<detail::Socket> sock;
  std::shared_ptr<detail::TlsContext> tls;
  try {
    tls = TlsFor(options.security);
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (tls) {
    detail::ScopedSigpipeBlock no_sigpipe;
    sock = detail::StartTls(fd, *tls, options.security.tls_server_name, deadline, -1);  // owns fd
  } else {
    sock = std::make_unique<detail::Socket>(fd);
  }
  auto balancer = std::make_shared<detail::Balancer>(options, nullptr, true);
  auto conn = std::make_shared<detail::Connection>(std::move(sock), options, balancer->Notifier());
  conn->Start();
  try {
    conn->WaitHandshake(deadline);
  } catch (...) {
    conn->Close();  // joins the threads
    throw;
  }
  balancer->StartAdopted(std::move(conn));
  return std::unique_ptr<TcpClient>(new TcpClient(std::move(balancer)));
}

detail::CallSpec TcpClient::SpecFrom(CallContext& ctx) const {
  detail::CallSpec spec;
  spec.deadline = ctx.deadline_;
  const auto& token = balancer_->options().security.token;
  if (!token.empty()) spec.metadata.emplace_back("authorization", "Bearer " + token);
  spec.metadata.insert(spec.metadata.end(), ctx.metadata_.begin(), ctx.metadata_.end());
  spec.cancel = ctx.cancel_;
  std::lock_guard lk(ctx.cancel_->mu);
  ctx.cancel_->balancer = balancer_;
  return spec;
}

void TcpClient::StartUnary(CallContext& ctx, std::string_view method, std::string_view request,
                           std::function<void(Result<std::string>&&)> done) {
  auto t = std::make_shared<detail::UnaryTask>();
  t->spec = SpecFrom(ctx);
  t->method = method;
  t->request = request;
  t->done = std::move(done);
  balancer_->StartUnary(std::move(t));
}

std::future<Result<std::string>> TcpClient::UnaryRaw(CallContext& ctx, std::string_view method,
                                                     std::string_view request) {
  auto promise = std::make_shared<std::promise<Result<std::string>>>();
  auto future = promise->get_future();
  StartUnary(ctx, method, request, [promise](Result<std::string>&& r) { promise->set_value(std::move(r)); });
  return future;
}

void TcpClient::UnaryRaw(CallContext& ctx, std::string_view method, std::string_view request,
                         std::function<void(Result<std::string>&&)> done) {
  StartUnary(ctx, method, request, std::move(done));
}

std::unique_ptr<RawStream> TcpClient::StreamRaw(CallContext& ctx, std::string_view method) {
  Result<std::string> failed;
  auto [conn, call] = balancer_->OpenStream(SpecFrom(ctx), method, &failed);
  if (!call) {
    auto state = std::make_shared<detail::CallState>();
    state->done = true;
    state->status = failed.status;
    state->safe_to_retry = failed.safe_to_retry;
    return std::unique_ptr<RawStream>(new RawStream(nullptr, std::move(state)));
  }
  return std::unique_ptr<RawStream>(new RawStream(std::move(conn), std::move(call)));
}

std::future<Result<calculator::v1::CalculateResponse>> TcpClient::Calculate(
    CallContext& ctx, const calculator::v1::CalculateRequest& request) {
  return Unary<calculator::v1::CalculateResponse>(ctx, kCalculateMethod, request);
}

void TcpClient::Calculate(CallContext& ctx, const calculator::v1::CalculateRequest& request,
                          std::function<void(Result<calculator::v1::CalculateResponse>&&)> done) {
  Unary<calculator::v1::CalculateResponse>(ctx, kCalculateMethod, request, std::move(done));
}

void TcpClient::Evaluate(CallContext& ctx, const calculator::v1::EvaluateRequest& request,
                         std::function<void(Result<calculator::v1::EvaluateResponse>&&)> done) {
  Unary<calculator::v1::EvaluateResponse>(ctx, kEvaluateMethod, request, std::move(done));
}

std::future<Result<calculator::v1::EvaluateResponse>> TcpClient::Evaluate(
    CallContext& ctx, const calculator::v1::EvaluateRequest& request) {
  return Unary<calculator::v1::EvaluateResponse>(ctx, kEvaluateMethod, request);
}

std::unique_ptr<Stream<calculator::v1::CalculateStreamRequest, calculator::v1::CalculateStreamResponse>>
TcpClient::CalculateStream(CallContext& ctx) {
  return std::make_unique<Stream<calculator::v1::CalculateStreamRequest, calculator::v1::CalculateStreamResponse>>(
      StreamRaw(ctx, kCalculateStreamMethod));
}

std::future<std::chrono::nanoseconds> TcpClient::Ping() { return balancer_->Ping(); }
wire::Settings TcpClient::server_settings() const { return balancer_->settings(); }
ConnectivityState TcpClient::state() const { return balancer_->state(); }
grpc::Status TcpClient::WaitReady(Clock::time_point deadline) { return balancer_->WaitReady(deadline); }
std::vector<EndpointInfo> TcpClient::endpoints() const { return balancer_->endpoints(); }
bool TcpClient::draining() const { return balancer_->draining(); }
bool TcpClient::closed() const { return balancer_->closed(); }
void TcpClient::Close() {
  if (balancer_) balancer_->Close();
}

}  // namespace calc
