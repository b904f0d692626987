#include "calcd_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace calc::testing {

namespace {

std::string Binary(const char* env, const char* name) {
  if (const char* p = std::getenv(env); p && *p) return p;
  std::string path = std::string(CALC_TEST_BIN) + "/" + name;
  if (!std::filesystem::exists(path)) {
    throw std::runtime_error(path + " is missing: build with Go on PATH (CMake's calc-test-servers target) or set " +
                             env);
  }
  return path;
}

// Run runs argv to completion, its output to log; it returns the exit status.
int Run(const std::vector<std::string>& argv, const std::string& log, pid_t* pid_out = nullptr) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("spawn " + argv[0] + ": " + std::strerror(rc));
  if (pid_out) {
    *pid_out = pid;
    return 0;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "calc-cpp-test-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Certs MakeCerts(const std::string& dir) {
  std::string log = dir + ".devcerts.log";
  int st = Run({Binary("CALC_DEVCERTS", "devcerts"), "-out", dir}, log);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) throw std::runtime_error("devcerts failed: " + ReadFile(log));
  return Certs{dir};
}

std::string WritePolicy(const std::string& dir, const std::string& token) {
  // The SHA-256 of the token, by the same OpenSSL the client links.
  unsigned char md[32];
  unsigned int md_len = 0;
  if (EVP_Digest(token.data(), token.size(), md, &md_len, EVP_sha256(), nullptr) != 1 || md_len != 32) {
    throw std::runtime_error("SHA-256 failed");
  }
  static const char* hex = "0123456789abcdef";
  std::string h;
  for (unsigned char c : md) {
    h += hex[c >> 4];
    h += hex[c & 15];
  }
  std::string path = dir + "/policy.json";
  std::ofstream(path) << R"({"principals":[{"name":"cpp-test","token_sha256":")" << h << R"(","methods":["*"]}]})"
                      << "\n";
  return path;
}

Calcd::Calcd(std::vector<std::string> args, std::string tcp_addr, std::string grpc_addr) {
  log_path_ = dir_.path() + "/calcd.log";
  std::vector<std::string> argv{Binary("CALC_CALCD", "calcd"), "--tcp-addr", tcp_addr, "--grpc-addr", grpc_addr};
  argv.insert(argv.end(), args.begin(), args.end());
  Run(argv, log_path_, &pid_);
  std::regex tcp_re(R"re("msg":"listening","transport":"tcp","addr":"([^"]+)")re");
  std::regex grpc_re(R"re("msg":"listening","transport":"grpc","addr":"([^"]+)")re");
  for (int i = 0; i < 200 && (tcp_.empty() || grpc_.empty()); i++) {
    std::string log = ReadFile(log_path_);
    std::smatch m;
    if (std::regex_search(log, m, tcp_re)) tcp_ = m[1];
    if (std::regex_search(log, m, grpc_re)) grpc_ = m[1];
    if (tcp_.empty() || grpc_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (tcp_.empty() || grpc_.empty()) {
    std::string log = ReadFile(log_path_);
    Kill();
    throw std::runtime_error("calcd did not start: " + log);
  }
}

Calcd::~Calcd() { Kill(); }

void Calcd::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

std::string Calcd::log() const { return ReadFile(log_path_); }

Listener::Listener() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd_, 64) != 0 ||
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error(std::string("listen on 127.0.0.1:0: ") + std::strerror(errno));
  }
  addr_ = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
}

Listener::~Listener() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace calc::testing
