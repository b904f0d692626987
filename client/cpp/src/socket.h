// Internal: the byte stream under a connection, plain TCP or TLS, and how
// one is opened. Every socket here is non-blocking; every wait is a poll
// bounded by a deadline that also watches a cancel descriptor.
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <string>

#include "calc/security.h"
#include "calc/tcp_client.h"

struct ssl_st;
struct ssl_ctx_st;

namespace calc::detail {

// Want says what a Read or Write that could not proceed waits for.
enum class Want { kRead, kWrite };

// Socket is a connected non-blocking stream socket; it owns fd. Read and
// Write may run on two threads at once.
class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  virtual ~Socket();
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }
  // Read reads up to n bytes into buf: the count, 0 at the end of the
  // stream, or -1 when nothing can be read now (*want says what to poll
  // for). Errors throw RpcError (UNAVAILABLE).
  virtual ssize_t Read(char* buf, size_t n, Want* want);
  // Write writes up to n bytes of buf: the count, or -1 when nothing can
  // be written now (*want says what to poll for). Errors throw RpcError.
  virtual ssize_t Write(const char* buf, size_t n, Want* want);
  // Buffered reports that Read has bytes to return without the socket
  // being readable (decrypted TLS data).
  virtual bool Buffered() { return false; }
  // Shutdown shuts both directions down, which wakes every poll of fd.
  void Shutdown();

 protected:
  const int fd_;
};

// TlsContext is a client's SSL_CTX: TLS 1.3 at least, the server's
// certificate verified against tls_ca (or the system's roots), the client
// certificate for mutual TLS. Shared by every connection of a client.
class TlsContext {
 public:
  // New loads options' files; bad options or files throw RpcError
  // (INVALID_ARGUMENT) naming the option and the file.
  static std::shared_ptr<TlsContext> New(const SecurityOptions& options);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  ssl_ctx_st* get() const { return ctx_; }

 private:
  explicit TlsContext(ssl_ctx_st* ctx) : ctx_(ctx) {}
  ssl_ctx_st* ctx_;
};

// Dial connects to host:port (host may be a name, an IP address or a
// bracketed IPv6 address) before deadline and returns a non-blocking,
// TCP_NODELAY socket. Errors throw RpcError: UNAVAILABLE (resolution,
// refused), DEADLINE_EXCEEDED, CANCELLED when cancel_fd becomes readable.
int Dial(const std::string& host, const std::string& port, Clock::time_point deadline, int cancel_fd);

// StartTls runs the client side of a TLS handshake on fd (which it takes)
// before deadline: TLS 1.3, ALPN calc/1 offered and required, SNI and
// verification of server_name (a DNS name or an IP address). A failed
// handshake throws RpcError: UNAVAILABLE
// with the reason (certificate verify failed: ..., an alert from the
// server, a server that closed the connection: not a TLS port),
// DEADLINE_EXCEEDED, CANCELLED.
std::unique_ptr<Socket> StartTls(int fd, const TlsContext& ctx, const std::string& server_name,
                                 Clock::time_point deadline, int cancel_fd);

// BlockSigpipe blocks SIGPIPE on the calling thread for good. OpenSSL
// writes with write(2), which raises SIGPIPE (killing the process by
// default) when the server has closed; the client's own threads, which do
// all the TLS I/O, call it first. A blocked SIGPIPE stays pending, unseen.
void BlockSigpipe();

// ScopedSigpipeBlock blocks SIGPIPE on the calling thread for its scope
// and discards one raised meanwhile, for TLS work on a caller's thread.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock();
  ~ScopedSigpipeBlock();
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  bool was_blocked_ = false, was_pending_ = false;
};

// WaitFd polls fd for events (POLLIN or POLLOUT) until deadline, also
// watching cancel_fd (-1: none). It returns true when fd is ready, false at
// the deadline, and throws RpcError (CANCELLED) when cancel_fd is readable.
bool WaitFd(int fd, short events, Clock::time_point deadline, int cancel_fd);

}  // namespace calc::detail
