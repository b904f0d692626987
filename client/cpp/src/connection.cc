#include "connection.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "calc/status_details.h"

namespace calc::detail {

using grpc::StatusCode;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

grpc::Status MakeStatus(StatusCode code, std::string message, std::string details) {
  return grpc::Status(code, std::move(message), std::move(details));
}

namespace {

constexpr uint64_t kKeepaliveBit = 1ull << 63;  // marks keepalive PINGs, which nobody waits for

std::string PingPayload(uint64_t v) {
  std::string p;
  wire::AppendU32(p, static_cast<uint32_t>(v >> 32));
  wire::AppendU32(p, static_cast<uint32_t>(v));
  return p;
}

}  // namespace

Connection::Connection(std::unique_ptr<Socket> sock, const TcpClient::Options& opts, std::function<void()> on_change)
    : sock_(std::move(sock)), fd_(sock_->fd()), opts_(opts), on_change_(std::move(on_change)) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw RpcError(MakeStatus(StatusCode::INTERNAL, std::string("pipe: ") + std::strerror(errno)));
  }
  wake_r_ = p[0];
  wake_w_ = p[1];
}

Connection::~Connection() {
  Close();
  ::close(wake_r_);
  ::close(wake_w_);
}

void Connection::Start() {
  {
    std::lock_guard lk(mu_);
    wire::AppendPreface(queue_);  // the client may send frames right after it
  }
  // Each thread holds a reference, so a connection closed from a completion
  // callback (which detaches the reader) outlives its threads.
  reader_ = std::thread([self = shared_from_this()] {
    BlockSigpipe();
    self->ReaderLoop();
  });
  {
    std::lock_guard lk(mu_);  // published to StartCall by mu_
    reader_id_ = reader_.get_id();
  }
  writer_ = std::thread([self = shared_from_this()] {
    BlockSigpipe();
    self->WriterLoop();
  });
}

void Connection::WaitHandshake(Clock::time_point deadline) {
  std::unique_lock lk(mu_);
  if (!handshake_cv_.wait_until(lk, deadline, [&] { return have_settings_ || goaway_ || closed_; })) {
    lk.unlock();
    Shutdown(MakeStatus(StatusCode::DEADLINE_EXCEEDED, "no SETTINGS from the server within the connect timeout"));
    throw RpcError(MakeStatus(StatusCode::DEADLINE_EXCEEDED, "no SETTINGS from the server within the connect timeout"));
  }
  if (have_settings_ && !goaway_ && !closed_) return;
  grpc::Status st;
  if (goaway_) {
    st = MakeStatus(StatusCode::UNAVAILABLE,
                    "server refused the connection: GOAWAY " + StatusCodeName(goaway_->status.code()) + ": " +
                        goaway_->status.message(),
                    goaway_details_);
  } else {
    st = MakeStatus(StatusCode::UNAVAILABLE, "handshake failed: " + close_reason_.error_message());
  }
  lk.unlock();
  Shutdown(st);
  throw RpcError(st);
}

void Connection::EnqueueLocked(wire::Kind kind, uint8_t flags, uint32_t id, std::string_view payload) {
  wire::AppendFrame(queue_, kind, flags, id, payload);
  writer_cv_.notify_one();
}

void Connection::Wake() {
  char b = 1;
  [[maybe_unused]] auto n = ::write(wake_w_, &b, 1);  // a full pipe already wakes the reader
}

std::shared_ptr<CallState> Connection::StartCall(const CallSpec& spec, std::string_view method, bool streaming,
                                                 std::string_view message,
                                                 std::function<void(Result<std::string>&&)> on_done,
                                                 Result<std::string>* refused) {
  auto refuse = [&](StatusCode code, std::string msg, bool safe, std::string details = "") {
    refused->status = MakeStatus(code, std::move(msg), std::move(details));
    refused->safe_to_retry = safe;
    return nullptr;
  };
  const auto& handle = spec.cancel;
  {
    std::lock_guard hl(handle->mu);
    if (handle->cancelled) return refuse(StatusCode::CANCELLED, "call cancelled before it started", true);
  }
  if (method.empty() || method.size() > wire::kMaxMethodNameLen) {
    return refuse(StatusCode::INVALID_ARGUMENT, "method name must be 1 to 512 bytes", true);
  }
  size_t md_len = 0;
  for (const auto& [k, v] : spec.metadata) md_len += k.size() + v.size();
  if (md_len > wire::kMaxMetadataLen) {
    return refuse(StatusCode::RESOURCE_EXHAUSTED, "metadata over 8 KiB", true);
  }

  std::unique_lock lk(mu_);
  // A call started from a completion callback on the reader thread never
  // waits: the reader must go on reading, or a server blocked writing to
  // us would stop reading what the writer sends, and the queue never drain.
  if (std::this_thread::get_id() != reader_id_) {
    space_cv_.wait(lk, [&] { return closed_ || queue_.size() < opts_.max_queued_bytes; });
  }
  if (closed_) {
    return refuse(StatusCode::UNAVAILABLE, "connection closed: " + close_reason_.error_message(), true);
  }
  if (goaway_) {
    return refuse(StatusCode::UNAVAILABLE,
                  "connection draining: server sent GOAWAY: " + goaway_->status.message(), true, goaway_details_);
  }
  auto now = Clock::now();
  auto deadline = spec.deadline;
  if (deadline && *deadline <= now) {
    return refuse(StatusCode::DEADLINE_EXCEEDED, "deadline exceeded before the call started", false);
  }
  if (message.size() > settings_.max_message_size) {
    return refuse(StatusCode::RESOURCE_EXHAUSTED,
                  "request message of " + std::to_string(message.size()) + " bytes exceeds the server's max of " +
                      std::to_string(settings_.max_message_size),
                  true);
  }
  if (next_id_ > 0xFFFFFFFFull) {
    return refuse(StatusCode::UNAVAILABLE, "call ids exhausted on this connection", true);
  }

  wire::RequestHeader h;
  std::string method_name(method);
  auto ref_it = refs_.find(method_name);
  if (ref_it != refs_.end()) {
    h.method_ref = ref_it->second;
  } else {
    if (refs_.size() >= wire::kMaxMethodRefs || next_ref_ > wire::kMaxMethodRef) {
      return refuse(StatusCode::RESOURCE_EXHAUSTED, "no method refs left on this connection (256 bound)", true);
    }
    h.method_ref = next_ref_;
    h.method_name = method_name;
  }
  if (deadline) {
    // Round up so the server never sees a budget of 0 for a live deadline.
    h.timeout = std::chrono::ceil<microseconds>(*deadline - now);
  }
  h.metadata = spec.metadata;
  std::string payload;
  uint8_t flags = wire::AppendRequestHeader(payload, h);
  flags |= wire::AppendMessage(payload, message, settings_.compress_threshold);
  if (wire::kHeaderSize + payload.size() > settings_.max_frame_size) {
    return refuse(StatusCode::RESOURCE_EXHAUSTED, "request frame exceeds the server's max frame size", true);
  }

  // Commit: nothing below can fail.
  if (!h.method_name.empty()) refs_.emplace(method_name, next_ref_++);
  auto call = std::make_shared<CallState>();
  call->id = static_cast<uint32_t>(next_id_++);
  call->streaming = streaming;
  call->deadline = deadline;
  call->on_done = std::move(on_done);
  calls_.emplace(call->id, call);
  {
    std::lock_guard hl(handle->mu);
    handle->conn = weak_from_this();
    handle->id = call->id;
  }
  EnqueueLocked(wire::Kind::kRequest, flags, call->id, payload);
  if (deadline) {
    deadlines_.emplace(*deadline, call->id);
    if (*deadline < reader_wake_at_) Wake();
  }
  return call;
}

void Connection::SendCancelLocked(CallState& call) {
  if (call.cancel_sent || closed_) return;
  call.cancel_sent = true;
  EnqueueLocked(wire::Kind::kCancel, 0, call.id, {});
}

void Connection::CancelCall(uint32_t id) {
  std::lock_guard lk(mu_);
  auto it = calls_.find(id);
  if (it != calls_.end()) SendCancelLocked(*it->second);
}

bool Connection::SendMessage(const std::shared_ptr<CallState>& call, std::string_view message) {
  std::vector<Completion> done;
  std::unique_lock lk(mu_);
  space_cv_.wait(lk, [&] { return closed_ || call->done || queue_.size() < opts_.max_queued_bytes; });
  if (call->done || call->half_closed) return false;
  if (message.size() > settings_.max_message_size) {
    SendCancelLocked(*call);
    CompleteLocked(call,
                   MakeStatus(StatusCode::RESOURCE_EXHAUSTED, "stream message of " + std::to_string(message.size()) +
                                                                   " bytes exceeds the server's max message size"),
                   false, {}, done);
    return false;
  }
  std::string payload;
  uint8_t flags = wire::AppendMessage(payload, message, settings_.compress_threshold);
  EnqueueLocked(wire::Kind::kMessage, flags, call->id, payload);
  return true;
}

bool Connection::SendHalfClose(const std::shared_ptr<CallState>& call) {
  std::lock_guard lk(mu_);
  if (call->done || call->half_closed) return false;
  call->half_closed = true;
  EnqueueLocked(wire::Kind::kHalfClose, 0, call->id, {});
  return true;
}

bool Connection::ReadMessage(const std::shared_ptr<CallState>& call, std::string* message) {
  std::unique_lock lk(mu_);
  call->cv.wait(lk, [&] { return !call->inbox.empty() || call->done; });
  if (call->inbox.empty()) return false;
  *message = std::move(call->inbox.front());
  call->inbox.pop_front();
  return true;
}

grpc::Status Connection::WaitFinish(const std::shared_ptr<CallState>& call) {
  std::unique_lock lk(mu_);
  call->cv.wait(lk, [&] { return call->done; });
  return call->status;
}

void Connection::Abandon(const std::shared_ptr<CallState>& call) {
  std::vector<Completion> done;
  std::lock_guard lk(mu_);
  if (call->done) return;
  SendCancelLocked(*call);
  CompleteLocked(call, MakeStatus(StatusCode::CANCELLED, "stream destroyed before it finished"), false, {}, done);
}

std::future<std::chrono::nanoseconds> Connection::Ping() {
  std::promise<std::chrono::nanoseconds> p;
  auto f = p.get_future();
  std::lock_guard lk(mu_);
  if (closed_) {
    p.set_exception(std::make_exception_ptr(
        RpcError(MakeStatus(StatusCode::UNAVAILABLE, "connection closed: " + close_reason_.error_message()))));
    return f;
  }
  uint64_t n = next_ping_++;
  pings_.emplace(n, PingWait{Clock::now(), std::move(p)});
  EnqueueLocked(wire::Kind::kPing, 0, 0, PingPayload(n));
  return f;
}

void Connection::CompleteLocked(const std::shared_ptr<CallState>& call, grpc::Status status, bool safe_to_retry,
                                std::string value, std::vector<Completion>& done) {
  if (call->done) return;
  call->done = true;
  call->status = std::move(status);
  call->safe_to_retry = safe_to_retry;
  calls_.erase(call->id);
  if (call->deadline) deadlines_.erase({*call->deadline, call->id});
  if (call->streaming) {
    call->cv.notify_all();
    space_cv_.notify_all();  // a writer blocked on this stream gives up
    return;
  }
  if (!call->on_done) return;
  Result<std::string> r;
  r.status = call->status;
  r.safe_to_retry = safe_to_retry;
  r.value = std::move(value);
  done.push_back([on_done = std::move(call->on_done), r = std::move(r)]() mutable { on_done(std::move(r)); });
}

void Connection::RunCompletions(std::vector<Completion>& done) {
  for (auto& c : done) c();
  done.clear();
}

void Connection::ExpireDeadlinesLocked(Clock::time_point now, std::vector<Completion>& done) {
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    uint32_t id = deadlines_.begin()->second;
    auto it = calls_.find(id);
    if (it == calls_.end()) {
      deadlines_.erase(deadlines_.begin());
      continue;
    }
    auto call = it->second;
    SendCancelLocked(*call);  // the server may still be working on it
    CompleteLocked(call, MakeStatus(StatusCode::DEADLINE_EXCEEDED, "deadline exceeded"), false, {}, done);
  }
}

void Connection::ProtocolError(const std::string& what) { throw RpcError(MakeStatus(StatusCode::INTERNAL, what)); }

void Connection::HandleFrame(wire::Frame& f, std::vector<Completion>& done) {
  using wire::Kind;
  auto kind = static_cast<Kind>(f.kind);
  bool connection_frame =
      kind == Kind::kSettings || kind == Kind::kPing || kind == Kind::kPong || kind == Kind::kGoAway;
  if (connection_frame && f.id != 0) ProtocolError(wire::KindName(f.kind) + " frame with call id " + std::to_string(f.id));
  if (!connection_frame && f.id == 0) ProtocolError(wire::KindName(f.kind) + " frame with call id 0");

  std::lock_guard lk(mu_);
  switch (kind) {
    case Kind::kSettings: {
      settings_ = wire::ParseSettings(f.payload);
      have_settings_ = true;
      if (opts_.keepalive) {
        keepalive_ = opts_.keepalive->count() > 0 ? std::optional<Clock::duration>(*opts_.keepalive) : std::nullopt;
      } else if (settings_.idle_timeout_millis > 0) {
        keepalive_ = milliseconds(settings_.idle_timeout_millis / 2);
      } else {
        keepalive_.reset();
      }
      next_keepalive_ = keepalive_ ? Clock::now() + *keepalive_ : Clock::time_point::max();
      handshake_cv_.notify_all();
      return;
    }
    case Kind::kPing:
      if (f.payload.size() > wire::kMaxPingPayload) ProtocolError("PING payload over 64 bytes");
      EnqueueLocked(Kind::kPong, 0, 0, f.payload);
      return;
    case Kind::kPong: {
      if (f.payload.size() != 8) return;  // not one of ours
      uint64_t n = (uint64_t{wire::ReadU32(f.payload.data())} << 32) | wire::ReadU32(f.payload.data() + 4);
      auto it = pings_.find(n);
      if (it != pings_.end()) {
        it->second.promise.set_value(Clock::now() - it->second.sent);
        pings_.erase(it);
      }
      return;
    }
    case Kind::kGoAway: {
      wire::GoAway g = wire::ParseGoAway(f.payload);
      goaway_details_ = g.status.SerializeAsString();
      std::string why = "call not processed: server sent GOAWAY (last accepted id " + std::to_string(g.last_id) +
                        ", " + StatusCodeName(g.status.code()) + ": " + g.status.message() + ")";
      std::vector<std::shared_ptr<CallState>> refused;
      for (auto it = calls_.upper_bound(g.last_id); it != calls_.end(); ++it) refused.push_back(it->second);
      for (auto& call : refused) CompleteLocked(call, MakeStatus(StatusCode::UNAVAILABLE, why, goaway_details_), true, {}, done);
      goaway_ = std::move(g);
      handshake_cv_.notify_all();
      if (on_change_) done.push_back(on_change_);
      return;
    }
    case Kind::kResponse:
    case Kind::kMessage:
    case Kind::kStatus: {
      auto it = calls_.find(f.id);
      if (it == calls_.end()) return;  // a call that already ended (deadline, cancel): ignore
      auto call = it->second;
      if (kind == Kind::kStatus) {
        google::rpc::Status st;
        try {
          st = wire::ParseStatus(f.payload);
        } catch (const wire::WireError& e) {
          CompleteLocked(call, MakeStatus(StatusCode::INTERNAL, e.what()), false, {}, done);
          return;
        }
        if (st.code() == 0 && !call->streaming) {
          CompleteLocked(call, MakeStatus(StatusCode::INTERNAL, "server ended a unary call with OK but no RESPONSE"),
                         false, {}, done);
        } else if (st.code() == 0) {
          CompleteLocked(call, grpc::Status::OK, false, {}, done);
        } else {
          // error_details() is the STATUS payload itself, as grpc++ gives
          // the grpc-status-details-bin trailer.
          CompleteLocked(call, MakeStatus(static_cast<StatusCode>(st.code()), st.message(), f.payload), false, {},
                         done);
        }
        return;
      }
      if ((kind == Kind::kResponse) == call->streaming) {
        SendCancelLocked(*call);
        CompleteLocked(call,
                       MakeStatus(StatusCode::INTERNAL, wire::KindName(f.kind) + " frame on a " +
                                                            (call->streaming ? "streaming" : "unary") + " call"),
                       false, {}, done);
        return;
      }
      std::string msg;
      try {
        msg = wire::DecodeMessage(f.payload, f.flags, opts_.max_message_size);
      } catch (const wire::WireError& e) {
        SendCancelLocked(*call);
        auto code = e.code() == wire::ErrorCode::kMessageTooLarge ? StatusCode::RESOURCE_EXHAUSTED : StatusCode::INTERNAL;
        CompleteLocked(call, MakeStatus(code, std::string("response: ") + e.what()), false, {}, done);
        return;
      }
      if (kind == Kind::kResponse) {
        CompleteLocked(call, grpc::Status::OK, false, std::move(msg), done);
      } else {
        call->inbox.push_back(std::move(msg));
        call->cv.notify_all();
      }
      return;
    }
    case Kind::kRequest:
    case Kind::kHalfClose:
    case Kind::kCancel:
      ProtocolError("server sent a client-only " + wire::KindName(f.kind) + " frame");
  }
  ProtocolError("unknown frame kind " + wire::KindName(f.kind));
}

void Connection::ReaderLoop() {
  wire::FrameDecoder decoder(opts_.max_frame_size);
  std::vector<char> buf(64 << 10);
  std::vector<Completion> done;
  grpc::Status reason;
  bool want_write = false;  // the last Read needs the socket writable (TLS)
  try {
    for (;;) {
      int timeout_ms;
      bool write_failed;
      {
        std::lock_guard lk(mu_);
        if (closed_) break;
        write_failed = write_error_.has_value();
        auto now = Clock::now();
        ExpireDeadlinesLocked(now, done);
        if (keepalive_ && now >= next_keepalive_) {
          EnqueueLocked(wire::Kind::kPing, 0, 0, PingPayload(kKeepaliveBit | next_ping_++));
          next_keepalive_ = now + *keepalive_;
        }
        reader_wake_at_ = std::min(deadlines_.empty() ? Clock::time_point::max() : deadlines_.begin()->first,
                                   keepalive_ ? next_keepalive_ : Clock::time_point::max());
        if (reader_wake_at_ == Clock::time_point::max()) {
          timeout_ms = -1;
        } else {
          auto wait = std::chrono::ceil<milliseconds>(reader_wake_at_ - now).count();
          timeout_ms = static_cast<int>(std::clamp<int64_t>(wait, 0, 3600 * 1000));
        }
      }
      RunCompletions(done);
      bool buffered = sock_->Buffered();  // TLS: decrypted bytes the socket no longer shows
      pollfd fds[2] = {{fd_, static_cast<short>(want_write ? POLLOUT : POLLIN), 0}, {wake_r_, POLLIN, 0}};
      int n = ::poll(fds, 2, buffered || write_failed ? 0 : timeout_ms);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw RpcError(MakeStatus(StatusCode::UNAVAILABLE, std::string("poll: ") + std::strerror(errno)));
      }
      if (fds[1].revents) {
        char drain[64];
        while (::read(wake_r_, drain, sizeof drain) > 0) {
        }
      }
      if (!buffered && !write_failed && !(fds[0].revents & (POLLIN | POLLOUT | POLLHUP | POLLERR))) continue;
      Want want = Want::kRead;
      ssize_t r = sock_->Read(buf.data(), buf.size(), &want);
      want_write = r < 0 && want == Want::kWrite;
      if (r < 0 && write_failed) {  // nothing more to read: the write error is the reason
        std::lock_guard lk(mu_);
        reason = *write_error_;
        break;
      }
      if (r < 0) continue;
      if (r == 0) {
        decoder.Finish();  // TRUNCATED if the server closed mid-frame
        std::lock_guard lk(mu_);
        reason = MakeStatus(StatusCode::UNAVAILABLE,
                            goaway_ ? "connection closed by the server after GOAWAY: " + goaway_->status.message()
                                    : std::string("connection closed by the server"),
                            goaway_details_);
        break;
      }
      decoder.Feed(buf.data(), static_cast<size_t>(r));
      while (auto f = decoder.Next()) {
        HandleFrame(*f, done);
        RunCompletions(done);
      }
    }
  } catch (const wire::WireError& e) {
    reason = MakeStatus(StatusCode::UNAVAILABLE, std::string("protocol error from the server: ") + e.what());
  } catch (const RpcError& e) {
    reason = MakeStatus(StatusCode::UNAVAILABLE, "connection failed: " + e.status().error_message());
  }
  RunCompletions(done);
  if (reason.ok()) return;  // Shutdown already ran (closed_)
  Shutdown(reason);
}

void Connection::WriterLoop() {
  std::string batch;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      writer_cv_.wait(lk, [&] { return !queue_.empty() || closed_; });
      if (closed_) return;
      batch.swap(queue_);
      space_cv_.notify_all();
    }
    size_t off = 0;
    while (off < batch.size()) {
      Want want = Want::kWrite;
      ssize_t n;
      try {
        n = sock_->Write(batch.data() + off, batch.size() - off, &want);
      } catch (const RpcError& e) {
        // The reader reports it once it has read what the server sent
        // before it went (a TLS alert says more than a reset).
        {
          std::lock_guard lk(mu_);
          write_error_ = MakeStatus(StatusCode::UNAVAILABLE, "write failed: " + e.status().error_message());
        }
        Wake();
        return;
      }
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      // Wait until the socket takes more (Shutdown wakes this poll with
      // POLLHUP). A TLS write that must read first leaves the reading to
      // the reader thread and looks again shortly.
      pollfd p{fd_, static_cast<short>(want == Want::kRead ? POLLIN : POLLOUT), 0};
      if (::poll(&p, 1, want == Want::kRead ? 5 : -1) < 0 && errno != EINTR) {
        Shutdown(MakeStatus(StatusCode::UNAVAILABLE, std::string("poll: ") + std::strerror(errno)));
        return;
      }
      std::lock_guard lk(mu_);
      if (closed_) return;
    }
    batch.clear();
  }
}

std::string Connection::why_unusable() const {
  std::lock_guard lk(mu_);
  if (closed_) return "connection closed: " + close_reason_.error_message();
  if (goaway_) return "server sent GOAWAY: " + goaway_->status.message();
  return "";
}

void Connection::Shutdown(const grpc::Status& reason) {
  std::vector<Completion> done;
  std::map<uint64_t, PingWait> pings;
  {
    std::lock_guard lk(mu_);
    if (closed_) return;
    closed_ = true;
    close_reason_ = reason;
    std::vector<std::shared_ptr<CallState>> calls;
    for (auto& [id, call] : calls_) calls.push_back(call);
    for (auto& call : calls) CompleteLocked(call, reason, false, {}, done);
    pings.swap(pings_);
    writer_cv_.notify_all();
    space_cv_.notify_all();
    handshake_cv_.notify_all();
  }
  sock_->Shutdown();  // unblocks the reader and the writer
  Wake();
  for (auto& [n, w] : pings) {
    w.promise.set_exception(std::make_exception_ptr(
        RpcError(MakeStatus(StatusCode::UNAVAILABLE, "connection closed: " + reason.error_message()))));
  }
  RunCompletions(done);
  if (on_change_) on_change_();
}

void Connection::Close() {
  Shutdown(MakeStatus(StatusCode::CANCELLED, "connection closed by the client"));
  std::call_once(close_once_, [this] {
    bool detached = false;
    for (std::thread* t : {&reader_, &writer_}) {
      if (!t->joinable()) continue;
      if (t->get_id() == std::this_thread::get_id()) {
        t->detach();  // closed from a completion callback: the thread ends by itself
        detached = true;
      } else {
        t->join();
      }
    }
    // A detached thread may still look at the socket until it sees
    // closed_: then the destructor frees it.
    if (!detached) sock_.reset();
  });
}

}  // namespace calc::detail
