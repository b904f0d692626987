#include "socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace calc::detail {

using grpc::StatusCode;
using std::chrono::milliseconds;

namespace {

[[noreturn]] void Fail(StatusCode code, std::string message) { throw RpcError(grpc::Status(code, std::move(message))); }

// OpenSslErrors drains this thread's OpenSSL error queue into one line of
// reason strings ("certificate verify failed", "tlsv13 alert certificate
// required"), each once.
std::string OpenSslErrors(unsigned long* first_reason = nullptr) {
  std::vector<std::string> reasons;
  bool first = true;
  while (unsigned long e = ERR_get_error()) {
    if (first && first_reason) *first_reason = static_cast<unsigned long>(ERR_GET_REASON(e));
    first = false;
    const char* r = ERR_reason_error_string(e);
    std::string s = r ? r : "OpenSSL error " + std::to_string(e);
    if (std::find(reasons.begin(), reasons.end(), s) == reasons.end()) reasons.push_back(std::move(s));
  }
  std::string out;
  for (const auto& r : reasons) out += (out.empty() ? "" : "; ") + r;
  return out.empty() ? "unknown TLS error" : out;
}

bool IsIpLiteral(const std::string& host) {
  in6_addr a6;
  in_addr a4;
  return ::inet_pton(AF_INET, host.c_str(), &a4) == 1 || ::inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// TlsSocket is a Socket whose bytes go through an SSL object. OpenSSL
// objects are not thread-safe, so Read and Write take turns on mu_; the
// socket is non-blocking, so neither holds it for long.
class TlsSocket : public Socket {
 public:
  TlsSocket(int fd, SSL* ssl) : Socket(fd), ssl_(ssl) {}
  ~TlsSocket() override { SSL_free(ssl_); }

  ssize_t Read(char* buf, size_t n, Want* want) override {
    std::lock_guard lk(mu_);
    ERR_clear_error();
    int r = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(n, 1 << 30)));
    if (r > 0) return r;
    return Result(r, "read", want);
  }

  ssize_t Write(const char* buf, size_t n, Want* want) override {
    std::lock_guard lk(mu_);
    ERR_clear_error();
    int r = SSL_write(ssl_, buf, static_cast<int>(std::min<size_t>(n, 1 << 30)));
    if (r > 0) return r;
    return Result(r, "write", want);
  }

  bool Buffered() override {
    std::lock_guard lk(mu_);
    return SSL_pending(ssl_) > 0;
  }

 private:
  // Result turns an SSL_read/SSL_write return of r <= 0 into -1 (would
  // block), 0 (end of stream) or an RpcError. mu_ is held.
  ssize_t Result(int r, const char* op, Want* want) {
    int saved_errno = errno;
    switch (SSL_get_error(ssl_, r)) {
      case SSL_ERROR_WANT_READ:
        *want = Want::kRead;
        return -1;
      case SSL_ERROR_WANT_WRITE:
        *want = Want::kWrite;
        return -1;
      case SSL_ERROR_ZERO_RETURN:
        return 0;  // close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) a bare EOF: the frame decoder tells truncation
      case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (saved_errno == EAGAIN || saved_errno == EINTR) {
          *want = std::string_view(op) == "read" ? Want::kRead : Want::kWrite;
          return -1;
        }
        if (saved_errno == 0) return 0;
        Fail(StatusCode::UNAVAILABLE, std::string(op) + ": " + std::strerror(saved_errno));
      default:
        Fail(StatusCode::UNAVAILABLE, std::string("TLS ") + op + ": " + OpenSslErrors());
    }
  }

  std::mutex mu_;
  SSL* ssl_;
};

}  // namespace

// ---- SIGPIPE ----------------------------------------------------------------------

namespace {

sigset_t SigpipeSet() {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGPIPE);
  return s;
}

bool SigpipePending() {
  sigset_t pending;
  sigemptyset(&pending);
  sigpending(&pending);
  return sigismember(&pending, SIGPIPE) == 1;
}

}  // namespace

void BlockSigpipe() {
  sigset_t s = SigpipeSet();
  pthread_sigmask(SIG_BLOCK, &s, nullptr);
}

ScopedSigpipeBlock::ScopedSigpipeBlock() {
  sigset_t s = SigpipeSet(), old;
  pthread_sigmask(SIG_BLOCK, &s, &old);
  was_blocked_ = sigismember(&old, SIGPIPE) == 1;
  was_pending_ = SigpipePending();
}

ScopedSigpipeBlock::~ScopedSigpipeBlock() {
  if (was_blocked_) return;
  if (!was_pending_ && SigpipePending()) {
    sigset_t s = SigpipeSet();
    timespec zero{0, 0};
    while (sigtimedwait(&s, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  sigset_t s = SigpipeSet();
  pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
}

// ---- Socket ----------------------------------------------------------------------

Socket::~Socket() { ::close(fd_); }

ssize_t Socket::Read(char* buf, size_t n, Want* want) {
  ssize_t r = ::recv(fd_, buf, n, 0);
  if (r >= 0) return r;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    *want = Want::kRead;
    return -1;
  }
  Fail(StatusCode::UNAVAILABLE, std::string("read: ") + std::strerror(errno));
}

ssize_t Socket::Write(const char* buf, size_t n, Want* want) {
  ssize_t r = ::send(fd_, buf, n, MSG_NOSIGNAL);
  if (r >= 0) return r;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
    *want = Want::kWrite;
    return -1;
  }
  Fail(StatusCode::UNAVAILABLE, std::string("write: ") + std::strerror(errno));
}

void Socket::Shutdown() { ::shutdown(fd_, SHUT_RDWR); }

bool WaitFd(int fd, short events, Clock::time_point deadline, int cancel_fd) {
  for (;;) {
    auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p[2] = {{fd, events, 0}, {cancel_fd, POLLIN, 0}};
    int n = ::poll(p, cancel_fd >= 0 ? 2 : 1, static_cast<int>(std::min<int64_t>(left, 3600 * 1000)));
    if (n < 0) {
      if (errno == EINTR) continue;
      Fail(StatusCode::UNAVAILABLE, std::string("poll: ") + std::strerror(errno));
    }
    if (cancel_fd >= 0 && p[1].revents) Fail(StatusCode::CANCELLED, "client closed");
    if (n > 0 && p[0].revents) return true;
  }
}

// ---- TlsContext -----------------------------------------------------------------------

std::shared_ptr<TlsContext> TlsContext::New(const SecurityOptions& o) {
  if (o.tls_cert.empty() != o.tls_key.empty()) Fail(StatusCode::INVALID_ARGUMENT, "tls_cert and tls_key go together");
  // Say which file is missing before OpenSSL says something vaguer.
  for (const auto& [opt, path] : {std::pair{"tls_ca", &o.tls_ca}, {"tls_cert", &o.tls_cert}, {"tls_key", &o.tls_key}}) {
    if (path->empty()) continue;
    if (FILE* f = std::fopen(path->c_str(), "r")) {
      std::fclose(f);
    } else {
      Fail(StatusCode::INVALID_ARGUMENT, std::string(opt) + " " + *path + ": " + std::strerror(errno));
    }
  }
  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(TLS_client_method());
  if (!raw) Fail(StatusCode::INTERNAL, "SSL_CTX_new: " + OpenSslErrors());
  std::shared_ptr<TlsContext> ctx(new TlsContext(raw));
  SSL_CTX_set_min_proto_version(raw, TLS1_3_VERSION);
  SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_mode(raw, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!o.tls_ca.empty()) {
    if (SSL_CTX_load_verify_locations(raw, o.tls_ca.c_str(), nullptr) != 1) {
      Fail(StatusCode::INVALID_ARGUMENT, "tls_ca " + o.tls_ca + ": no PEM certificate (" + OpenSslErrors() + ")");
    }
  } else if (SSL_CTX_set_default_verify_paths(raw) != 1) {
    Fail(StatusCode::INTERNAL, "loading the system's CA certificates: " + OpenSslErrors());
  }
  if (!o.tls_cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(raw, o.tls_cert.c_str()) != 1) {
      Fail(StatusCode::INVALID_ARGUMENT, "tls_cert " + o.tls_cert + ": " + OpenSslErrors());
    }
    if (SSL_CTX_use_PrivateKey_file(raw, o.tls_key.c_str(), SSL_FILETYPE_PEM) != 1) {
      Fail(StatusCode::INVALID_ARGUMENT, "tls_key " + o.tls_key + ": " + OpenSslErrors());
    }
    if (SSL_CTX_check_private_key(raw) != 1) {
      Fail(StatusCode::INVALID_ARGUMENT, "tls_key " + o.tls_key + " is not the key of tls_cert " + o.tls_cert);
    }
  }
  return ctx;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

// ---- dialling ------------------------------------------------------------------------------

int Dial(const std::string& host, const std::string& port, Clock::time_point deadline, int cancel_fd) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    Fail(StatusCode::UNAVAILABLE, std::string("resolve: ") + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard(res, ::freeaddrinfo);
  std::string last_error = "no addresses";
  bool timed_out = false;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    int s = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (s < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    int rc = ::connect(s, ai->ai_addr, ai->ai_addrlen);
    int err = rc == 0 ? 0 : errno;
    if (rc != 0 && errno == EINPROGRESS) {
      try {
        if (WaitFd(s, POLLOUT, deadline, cancel_fd)) {
          socklen_t len = sizeof err;
          ::getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
        } else {
          err = ETIMEDOUT;
          timed_out = true;
        }
      } catch (...) {
        ::close(s);
        throw;
      }
    }
    if (err != 0) {
      last_error = std::strerror(err);
      ::close(s);
      if (timed_out) break;
      continue;
    }
    int one = 1;
    ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return s;
  }
  if (timed_out) Fail(StatusCode::DEADLINE_EXCEEDED, "connect: timed out");
  Fail(StatusCode::UNAVAILABLE, "connect: " + last_error);
}

std::unique_ptr<Socket> StartTls(int fd, const TlsContext& ctx, const std::string& server_name,
                                 Clock::time_point deadline, int cancel_fd) {
  struct FdGuard {
    int fd;
    ~FdGuard() {
      if (fd >= 0) ::close(fd);
    }
  } fd_guard{fd};  // closes fd on failure
  const std::string what = "TLS handshake";
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx.get());
  if (!ssl) Fail(StatusCode::INTERNAL, "SSL_new: " + OpenSslErrors());
  std::unique_ptr<SSL, void (*)(SSL*)> guard(ssl, SSL_free);
  static const unsigned char kAlpnWire[] = {6, 'c', 'a', 'l', 'c', '/', '1'};
  static_assert(sizeof kAlpnWire == 1 + kAlpn.size());
  if (SSL_set_alpn_protos(ssl, kAlpnWire, sizeof kAlpnWire) != 0) Fail(StatusCode::INTERNAL, "SSL_set_alpn_protos failed");
  if (server_name.empty()) Fail(StatusCode::INVALID_ARGUMENT, what + ": no server name to verify");
  if (IsIpLiteral(server_name)) {
    // An IP address is checked against the certificate's IP SANs; SNI
    // carries no IP addresses (RFC 6066).
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), server_name.c_str()) != 1) {
      Fail(StatusCode::INVALID_ARGUMENT, what + ": bad IP address " + server_name);
    }
  } else if (SSL_set1_host(ssl, server_name.c_str()) != 1 ||
             SSL_set_tlsext_host_name(ssl, server_name.c_str()) != 1) {
    Fail(StatusCode::INVALID_ARGUMENT, what + ": bad server name " + server_name + ": " + OpenSslErrors());
  }
  if (SSL_set_fd(ssl, fd) != 1) Fail(StatusCode::INTERNAL, "SSL_set_fd: " + OpenSslErrors());
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_connect(ssl);
    if (r == 1) break;
    int saved_errno = errno;
    short events = 0;
    switch (SSL_get_error(ssl, r)) {
      case SSL_ERROR_WANT_READ:
        events = POLLIN;
        break;
      case SSL_ERROR_WANT_WRITE:
        events = POLLOUT;
        break;
      case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (saved_errno == EINTR || saved_errno == EAGAIN) continue;
        Fail(StatusCode::UNAVAILABLE,
             what + ": the server closed the connection" +
                 (saved_errno ? " (" + std::string(std::strerror(saved_errno)) + ")" : "") +
                 " before the handshake finished: is it a TLS port? (calcd without --tls-cert closes on a TLS hello)");
      case SSL_ERROR_ZERO_RETURN:
        Fail(StatusCode::UNAVAILABLE, what + ": the server closed the connection before the handshake finished");
      default: {
        unsigned long reason = 0;
        std::string errs = OpenSslErrors(&reason);
        if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
          Fail(StatusCode::UNAVAILABLE, what +
                                            ": the server closed the connection before the handshake finished: is "
                                            "it a TLS port? (calcd without --tls-cert closes on a TLS hello)");
        }
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK) errs += ": " + std::string(X509_verify_cert_error_string(v));
        if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
          errs += " (the certificate is not for \"" + server_name + "\")";
        }
        Fail(StatusCode::UNAVAILABLE, what + ": " + errs);
      }
    }
    if (!WaitFd(fd, events, deadline, cancel_fd)) Fail(StatusCode::DEADLINE_EXCEEDED, what + ": timed out");
  }
  const unsigned char* proto = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(ssl, &proto, &len);
  std::string got(reinterpret_cast<const char*>(proto ? proto : reinterpret_cast<const unsigned char*>("")), len);
  if (got != kAlpn) {
    Fail(StatusCode::UNAVAILABLE, "the server did not agree to ALPN " + std::string(kAlpn) + " over TLS (got \"" + got +
                                      "\"): not a calc raw TCP TLS port");
  }
  // A bare EOF after the handshake reads as the end of the stream: the
  // frame decoder reports a truncated frame itself.
  SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
  fd_guard.fd = -1;  // the TlsSocket owns fd now
  return std::make_unique<TlsSocket>(fd, guard.release());
}

}  // namespace calc::detail
