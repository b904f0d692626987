// Test helpers that run real programs: calcd (go build ./server/cmd/calcd)
// on loopback ports and tools/devcerts. The binaries come from CALC_CALCD
// and CALC_DEVCERTS in the environment, else from the build's test-bin/
// (CMake builds them with Go).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace calc::testing {

// TempDir is a directory removed with everything in it at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Certs is a devcerts directory: ca.pem, server.pem, server-key.pem,
// client.pem, client-key.pem, for localhost, 127.0.0.1 and ::1.
struct Certs {
  std::string dir;
  std::string ca() const { return dir + "/ca.pem"; }
  std::string server_cert() const { return dir + "/server.pem"; }
  std::string server_key() const { return dir + "/server-key.pem"; }
  std::string client_cert() const { return dir + "/client.pem"; }
  std::string client_key() const { return dir + "/client-key.pem"; }
};

// MakeCerts runs devcerts into dir (a new CA each time).
Certs MakeCerts(const std::string& dir);

// WritePolicy writes an --auth-tokens policy allowing token every method
// and returns its path.
std::string WritePolicy(const std::string& dir, const std::string& token);

// Calcd is a calcd process this test started; the destructor kills it
// (SIGKILL) and reaps it. Only this PID is ever signalled.
class Calcd {
 public:
  // Start runs calcd with args (besides --tcp-addr/--grpc-addr, which
  // default to 127.0.0.1:0), waits (10 s at most) until it logs both
  // listening addresses, and throws std::runtime_error with its log if it
  // does not.
  explicit Calcd(std::vector<std::string> args, std::string tcp_addr = "127.0.0.1:0",
                 std::string grpc_addr = "127.0.0.1:0");
  ~Calcd();
  Calcd(const Calcd&) = delete;
  Calcd& operator=(const Calcd&) = delete;

  const std::string& tcp() const { return tcp_; }
  const std::string& grpc() const { return grpc_; }
  pid_t pid() const { return pid_; }
  // Kill sends SIGKILL and reaps the process.
  void Kill();
  std::string log() const;

 private:
  pid_t pid_ = -1;
  TempDir dir_;
  std::string log_path_, tcp_, grpc_;
};

// Listener is a listening loopback TCP socket (127.0.0.1, a free port)
// that accepts nothing unless its owner calls accept: connections complete
// in the kernel's backlog and then hear nothing.
class Listener {
 public:
  Listener();
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  int fd() const { return fd_; }
  const std::string& addr() const { return addr_; }

 private:
  int fd_ = -1;
  std::string addr_;
};

}  // namespace calc::testing
