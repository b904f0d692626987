// TLS, mutual TLS and bearer tokens against real calcd processes started
// here (go build ./server/cmd/calcd, certificates from tools/devcerts):
//   mtls   --tls-cert/--tls-key, --tls-client-ca and --auth-tokens
//   tls    --tls-cert/--tls-key and --auth-tokens (no client certificates)
//   plain  no TLS, --auth-tokens (loopback only)
// Every refusal must come with its precise error, well before the connect
// timeout (10 s): none may hang.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <random>
#include <thread>

#include "calc/grpc_channel.h"
#include "calc/status_details.h"
#include "calc/tcp_client.h"
#include "calcd_process.h"
#include "calculator/v1/calculator.grpc.pb.h"

namespace calc {
namespace {

using calculator::v1::CalculateRequest;
using grpc::StatusCode;
using std::chrono::milliseconds;
using testing::Calcd;
using testing::Certs;
using testing::Listener;

constexpr milliseconds kConnectTimeout{10000};

::testing::AssertionResult Contains(const std::string& s, const std::string& part) {
  if (s.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << s << "\" does not contain \"" << part << "\"";
}
constexpr auto kBound = std::chrono::seconds(5);  // a refusal takes far less; a hang takes kConnectTimeout

// World holds the certificates and the calcds of this test process, each
// started on first use and killed at exit.
struct World {
  testing::TempDir dir;
  Certs certs = testing::MakeCerts(dir.path() + "/certs");
  Certs other = testing::MakeCerts(dir.path() + "/other");  // another CA
  std::string token = RandomToken();
  std::string policy = testing::WritePolicy(dir.path(), token);
  std::unique_ptr<Calcd> mtls, tls, plain;

  static std::string RandomToken() {
    std::random_device rd;
    std::string t = "cpp-";
    for (int i = 0; i < 4; i++) t += std::to_string(rd());
    return t;
  }
  Calcd& Mtls() {
    if (!mtls) {
      mtls = std::make_unique<Calcd>(std::vector<std::string>{"--tls-cert", certs.server_cert(), "--tls-key",
                                                              certs.server_key(), "--tls-client-ca", certs.ca(),
                                                              "--auth-tokens", policy});
    }
    return *mtls;
  }
  Calcd& Tls() {
    if (!tls) {
      tls = std::make_unique<Calcd>(std::vector<std::string>{"--tls-cert", certs.server_cert(), "--tls-key",
                                                             certs.server_key(), "--auth-tokens", policy});
    }
    return *tls;
  }
  Calcd& Plain() {
    if (!plain) plain = std::make_unique<Calcd>(std::vector<std::string>{"--auth-tokens", policy});
    return *plain;
  }
};

World& W() {
  static World w;
  return w;
}

TcpClient::Options MtlsOptions(bool with_token = true) {
  TcpClient::Options o;
  o.connect_timeout = kConnectTimeout;
  o.security.tls_ca = W().certs.ca();
  o.security.tls_cert = W().certs.client_cert();
  o.security.tls_key = W().certs.client_key();
  if (with_token) o.security.token = W().token;
  return o;
}

CalculateRequest Add(int64_t a, int64_t b) {
  CalculateRequest r;
  r.set_operator_(calculator::v1::OPERATOR_ADD);
  r.set_lhs(a);
  r.set_rhs(b);
  return r;
}

// Refusal is how Connect failed, and how long it took.
struct Refusal {
  grpc::Status status;
  Clock::duration took{};
};

Refusal ConnectRefused(const std::string& target, const TcpClient::Options& opts) {
  auto start = Clock::now();
  try {
    auto c = TcpClient::Connect(target, opts);
    ADD_FAILURE() << "connected to " << target;
  } catch (const RpcError& e) {
    Refusal r{e.status(), Clock::now() - start};
    std::cout << "refused in " << std::chrono::duration_cast<milliseconds>(r.took).count() << " ms: "
              << StatusCodeName(r.status.error_code()) << ": " << r.status.error_message() << "\n";
    return r;
  }
  return {};
}

// CallStatus makes one Calculate call on a new client and returns its status.
grpc::Status CallStatus(const std::string& target, const TcpClient::Options& opts, Clock::duration* took) {
  auto start = Clock::now();
  auto c = TcpClient::Connect(target, opts);
  CallContext ctx;
  ctx.set_timeout(kConnectTimeout);
  auto r = c->Calculate(ctx, Add(2, 3)).get();
  *took = Clock::now() - start;
  std::cout << "call ended in " << std::chrono::duration_cast<milliseconds>(*took).count()
            << " ms: " << StatusCodeName(r.status.error_code()) << ": " << r.status.error_message() << "\n";
  return r.status;
}

TEST(Tls, TcpMutualTlsWithTokenCalls) {
  auto c = TcpClient::Connect(W().Mtls().tcp(), MtlsOptions());
  CallContext ctx;
  ctx.set_timeout(kConnectTimeout);
  auto r = c->Calculate(ctx, Add(2, 3)).get();
  ASSERT_TRUE(r.ok()) << r.status.error_message();
  EXPECT_EQ(r.value.result(), 5);
  calculator::v1::EvaluateRequest ev;
  ev.set_expression("2 * (3 + 4)");
  CallContext ectx;
  auto e = c->Evaluate(ectx, ev).get();
  ASSERT_TRUE(e.ok()) << e.status.error_message();
  EXPECT_EQ(e.value.result(), "14");
  // 50 calls in flight at once over one TLS connection.
  std::vector<std::unique_ptr<CallContext>> ctxs;
  std::vector<std::future<Result<calculator::v1::CalculateResponse>>> futures;
  for (int i = 1; i <= 50; i++) {
    ctxs.push_back(std::make_unique<CallContext>());
    ctxs.back()->set_timeout(kConnectTimeout);
    futures.push_back(c->Calculate(*ctxs.back(), Add(i, i)));
  }
  for (int i = 1; i <= 50; i++) {
    auto got = futures[static_cast<size_t>(i - 1)].get();
    ASSERT_TRUE(got.ok()) << got.status.error_message();
    EXPECT_EQ(got.value.result(), 2 * i);
  }
  CallContext sctx;
  sctx.set_timeout(kConnectTimeout);
  auto s = c->CalculateStream(sctx);
  for (int i = 1; i <= 3; i++) {
    calculator::v1::CalculateStreamRequest m;
    m.set_id(static_cast<uint64_t>(i));
    m.mutable_calculation()->set_operator_(calculator::v1::OPERATOR_MULTIPLY);
    m.mutable_calculation()->set_lhs(i);
    m.mutable_calculation()->set_rhs(7);
    ASSERT_TRUE(s->Write(m));
  }
  s->WritesDone();
  calculator::v1::CalculateStreamResponse out;
  std::vector<int64_t> results;
  while (s->Read(&out)) results.push_back(out.result());
  EXPECT_TRUE(s->Finish().ok());
  EXPECT_EQ(results, (std::vector<int64_t>{7, 14, 21}));
  EXPECT_EQ(c->state(), ConnectivityState::kReady);
}

TEST(Tls, TcpServerNameOverrideAndLocalhost) {
  // The certificate names localhost, 127.0.0.1 and ::1: dial 127.0.0.1 but verify "localhost".
  auto opts = MtlsOptions();
  opts.security.tls_server_name = "localhost";
  auto c = TcpClient::Connect(W().Mtls().tcp(), opts);
  CallContext ctx;
  EXPECT_TRUE(c->Calculate(ctx, Add(1, 1)).get().ok());
}

TEST(Tls, WrongCa) {
  auto opts = MtlsOptions();
  opts.security.tls_ca = W().other.ca();
  auto r = ConnectRefused(W().Mtls().tcp(), opts);
  EXPECT_EQ(r.status.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Contains(r.status.error_message(), "TLS handshake: certificate verify failed: unable to get local issuer certificate"));
  EXPECT_LT(r.took, kBound);
}

TEST(Tls, WrongServerName) {
  auto opts = MtlsOptions();
  opts.security.tls_server_name = "calc.example.com";
  auto r = ConnectRefused(W().Mtls().tcp(), opts);
  EXPECT_EQ(r.status.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Contains(r.status.error_message(), "certificate verify failed: hostname mismatch"));
  EXPECT_LT(r.took, kBound);
  opts.security.tls_server_name = "127.0.0.2";  // an IP address the certificate does not name
  r = ConnectRefused(W().Mtls().tcp(), opts);
  EXPECT_EQ(r.status.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Contains(r.status.error_message(), "certificate verify failed: IP address mismatch"));
}

TEST(Tls, MissingClientCertificateUnderMutualTls) {
  auto opts = MtlsOptions();
  opts.security.tls_cert.clear();
  opts.security.tls_key.clear();
  auto r = ConnectRefused(W().Mtls().tcp(), opts);
  EXPECT_EQ(r.status.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Contains(r.status.error_message(), "tlsv13 alert certificate required"));
  EXPECT_LT(r.took, kBound);
}

TEST(Tls, ClientCertificateOfAnotherCa) {
  auto opts = MtlsOptions();
  opts.security.tls_cert = W().other.client_cert();
  opts.security.tls_key = W().other.client_key();
  auto r = ConnectRefused(W().Mtls().tcp(), opts);
  EXPECT_EQ(r.status.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Contains(r.status.error_message(), "tlsv1 alert unknown ca"));
  EXPECT_LT(r.took, kBound);
}

TEST(Tls, MissingToken) {
  TcpClient::Options opts;
  opts.connect_timeout = kConnectTimeout;
  opts.security.tls_ca = W().certs.ca();  // TLS, no client certificate, no token
  Clock::duration took;
  auto st = CallStatus(W().Tls().tcp(), opts, &took);
  EXPECT_EQ(st.error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(st.error_message(), "auth: missing credentials: send \"authorization: Bearer <token>\" metadata");
  EXPECT_LT(took, kBound);
}

TEST(Tls, BadToken) {
  auto opts = MtlsOptions();
  opts.security.token = "not-the-token";
  Clock::duration took;
  auto st = CallStatus(W().Mtls().tcp(), opts, &took);
  EXPECT_EQ(st.error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(st.error_message(), "auth: invalid token");
  EXPECT_LT(took, kBound);
}

TEST(Tls, PlaintextToATlsPort) {
  TcpClient::Options opts;
  opts.connect_timeout = kConnectTimeout;
  auto r = ConnectRefused(W().Mtls().tcp(), opts);
  EXPECT_EQ(r.status.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Contains(r.status.error_message(), "server refused the connection: GOAWAY UNAVAILABLE: this port requires TLS (1.3, ALPN calc/1)"));
  EXPECT_LT(r.took, kBound);
}

TEST(Tls, TlsToAPlaintextPort) {
  auto r = ConnectRefused(W().Plain().tcp(), MtlsOptions());
  EXPECT_EQ(r.status.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Contains(r.status.error_message(), "TLS handshake: the server closed the connection"));
  EXPECT_TRUE(Contains(r.status.error_message(), "is it a TLS port?"));
  EXPECT_LT(r.took, kBound);
}

TEST(Tls, SilentServerHonoursTheConnectTimeout) {
  Listener silent;
  for (bool tls : {true, false}) {
    auto opts = tls ? MtlsOptions() : TcpClient::Options();
    opts.connect_timeout = milliseconds(300);
    auto r = ConnectRefused(silent.addr(), opts);
    EXPECT_EQ(r.status.error_code(), StatusCode::DEADLINE_EXCEEDED);
    EXPECT_TRUE(Contains(r.status.error_message(), tls ? "TLS handshake: timed out" : "no SETTINGS from the server within the connect timeout"));
    EXPECT_GE(r.took, milliseconds(290));
    EXPECT_LT(r.took, kBound);
  }
}

TEST(Tls, ServerWithoutAlpnIsRefused) {
  // A TLS server with calcd's certificate that selects no ALPN protocol.
  Listener l;
  SSL_CTX* sctx = SSL_CTX_new(TLS_server_method());
  ASSERT_EQ(SSL_CTX_use_certificate_chain_file(sctx, W().certs.server_cert().c_str()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey_file(sctx, W().certs.server_key().c_str(), SSL_FILETYPE_PEM), 1);
  std::atomic<int> received{-1};
  std::thread server([&] {
    sigset_t pipe;  // the client hangs up while this server sends its session tickets
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    pollfd p{l.fd(), POLLIN, 0};
    if (::poll(&p, 1, 5000) != 1) return;
    int fd = ::accept(l.fd(), nullptr, nullptr);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    SSL* ssl = SSL_new(sctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
      char buf[16];
      int n = SSL_read(ssl, buf, sizeof buf);  // the client must not send its preface
      received = n > 0 ? n : 0;
    }
    SSL_free(ssl);
    ::close(fd);
  });
  auto r = ConnectRefused(l.addr(), MtlsOptions());
  server.join();
  SSL_CTX_free(sctx);
  EXPECT_EQ(r.status.error_code(), StatusCode::UNAVAILABLE);
  EXPECT_TRUE(Contains(r.status.error_message(), "the server did not agree to ALPN calc/1 over TLS (got \"\")"));
  EXPECT_EQ(received.load(), 0) << "the client sent bytes to a server without ALPN calc/1";
  EXPECT_LT(r.took, kBound);
}

// ---- gRPC: grpc::SslCredentials + AccessTokenCredentials ------------------------------------

grpc::Status GrpcCall(const std::string& target, const SecurityOptions& sec, int64_t* result) {
  auto stub = calculator::v1::CalculatorService::NewStub(NewGrpcChannel(target, sec));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kConnectTimeout);
  calculator::v1::CalculateResponse resp;
  auto st = stub->Calculate(&ctx, Add(20, 22), &resp);
  *result = resp.result();
  return st;
}

TEST(Tls, GrpcMutualTlsWithToken) {
  int64_t result = 0;
  auto st = GrpcCall(W().Mtls().grpc(), MtlsOptions().security, &result);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(result, 42);
  auto sec = MtlsOptions().security;
  sec.tls_server_name = "localhost";  // grpc's ssl target name override
  st = GrpcCall(W().Mtls().grpc(), sec, &result);
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST(Tls, GrpcRefusals) {
  int64_t result = 0;
  auto sec = MtlsOptions().security;
  sec.token = "not-the-token";
  auto st = GrpcCall(W().Mtls().grpc(), sec, &result);
  EXPECT_EQ(st.error_code(), StatusCode::UNAUTHENTICATED) << st.error_message();
  EXPECT_EQ(st.error_message(), "auth: invalid token");
  sec = MtlsOptions(false).security;
  sec.tls_cert.clear();
  sec.tls_key.clear();
  st = GrpcCall(W().Tls().grpc(), sec, &result);  // TLS, no token
  EXPECT_EQ(st.error_code(), StatusCode::UNAUTHENTICATED) << st.error_message();
  sec = MtlsOptions().security;
  sec.tls_ca = W().other.ca();
  st = GrpcCall(W().Mtls().grpc(), sec, &result);
  EXPECT_EQ(st.error_code(), StatusCode::UNAVAILABLE) << st.error_message();
}

TEST(Tls, PlaintextTokenToLoopback) {
  // Plaintext to a loopback calcd with --auth-tokens: the token travels as
  // metadata on both transports (a remote host would be refused).
  SecurityOptions sec;
  sec.token = W().token;
  int64_t result = 0;
  auto st = GrpcCall(W().Plain().grpc(), sec, &result);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(result, 42);
  st = GrpcCall(W().Plain().grpc(), {}, &result);
  EXPECT_EQ(st.error_code(), StatusCode::UNAUTHENTICATED) << st.error_message();
  TcpClient::Options opts;
  opts.security = sec;
  Clock::duration took;
  EXPECT_TRUE(CallStatus(W().Plain().tcp(), opts, &took).ok());
  EXPECT_EQ(CallStatus(W().Plain().tcp(), {}, &took).error_code(), StatusCode::UNAUTHENTICATED);
}

}  // namespace
}  // namespace calc
