// Option checks that need no server: loopback detection, the refusal to
// send a token in plaintext to another host, bad TLS files, bad targets,
// and the backoff numbers.
#include <gtest/gtest.h>

#include "calc/grpc_channel.h"
#include "calc/tcp_client.h"

namespace calc {
namespace {

using grpc::StatusCode;
using std::chrono::milliseconds;

grpc::Status ConnectError(const std::string& target, const TcpClient::Options& opts) {
  try {
    TcpClient::Connect(target, opts);
  } catch (const RpcError& e) {
    return e.status();
  }
  return grpc::Status::OK;
}

TEST(Security, IsLoopbackHost) {
  for (const char* h : {"localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "::ffff:127.0.0.1"}) {
    EXPECT_TRUE(IsLoopbackHost(h)) << h;
  }
  for (const char* h : {"example.com", "10.0.0.1", "0.0.0.0", "::", "", "localhost.example.com", "128.0.0.1"}) {
    EXPECT_FALSE(IsLoopbackHost(h)) << h;
  }
}

TEST(Security, TokenRefusedInPlaintextToARemoteHost) {
  SecurityOptions s;
  s.token = "t";
  EXPECT_TRUE(CheckSecurity(s, "127.0.0.1").ok());
  EXPECT_TRUE(CheckSecurity(s, "localhost").ok());
  auto st = CheckSecurity(s, "calc.invalid");
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(),
            "refusing to send the token in plaintext to calc.invalid, which is not a loopback address: use TLS (tls "
            "or tls_ca)");
  s.tls = true;
  EXPECT_TRUE(CheckSecurity(s, "calc.invalid").ok());
  s = {};
  s.token = "a\nb";
  EXPECT_EQ(CheckSecurity(s, "127.0.0.1").error_code(), StatusCode::INVALID_ARGUMENT);

  // Both clients refuse before any connection is attempted (.invalid never resolves).
  TcpClient::Options opts;
  opts.security.token = "t";
  st = ConnectError("127.0.0.1:1,calc.invalid:4000", opts);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("plaintext to calc.invalid"), std::string::npos) << st.error_message();
  try {
    NewGrpcChannel("calc.invalid:50051", opts.security);
    FAIL() << "gRPC channel with a plaintext token to a remote host";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.status().error_code(), StatusCode::INVALID_ARGUMENT);
  }
  try {
    NewGrpcChannel("dns:///calc.invalid:50051", opts.security);
    FAIL() << "gRPC channel with a plaintext token to a remote dns:/// target";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.status().error_code(), StatusCode::INVALID_ARGUMENT);
  }
  EXPECT_NE(NewGrpcChannel("localhost:50051", opts.security), nullptr);  // loopback: allowed
  opts.security.tls = true;
  EXPECT_NE(NewGrpcChannel("calc.invalid:50051", opts.security), nullptr);  // TLS: allowed
}

TEST(Security, BadTlsFilesAreInvalidArgument) {
  TcpClient::Options opts;
  opts.security.tls_cert = "/nonexistent/client.pem";
  auto st = ConnectError("127.0.0.1:1", opts);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "tls_cert and tls_key go together");
  opts.security = {};
  opts.security.tls_ca = "/nonexistent/ca.pem";
  st = ConnectError("127.0.0.1:1", opts);
  EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "tls_ca /nonexistent/ca.pem: No such file or directory");
  try {
    NewGrpcChannel("127.0.0.1:1", opts.security);
    FAIL() << "gRPC channel with a missing CA file";
  } catch (const RpcError& e) {
    EXPECT_EQ(e.status().error_code(), StatusCode::INVALID_ARGUMENT);
  }
}

TEST(Security, BadTargets) {
  for (const char* t : {"", "nohost", ":4000", "127.0.0.1:", "dns:///calc:4000", "127.0.0.1:4000,", "::1:4000"}) {
    auto st = ConnectError(t, {});
    EXPECT_EQ(st.error_code(), StatusCode::INVALID_ARGUMENT) << t << ": " << st.error_message();
  }
}

TEST(Backoff, GrpcNumbers) {
  Backoff b;  // 1 s, 1.6, 0.2, 120 s
  auto ms = [](Clock::duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); };
  EXPECT_EQ(ms(BackoffDelay(b, 0, 0.5)), 1000);
  EXPECT_EQ(ms(BackoffDelay(b, 1, 0.5)), 1600);
  EXPECT_EQ(ms(BackoffDelay(b, 2, 0.5)), 2560);
  EXPECT_EQ(ms(BackoffDelay(b, 100, 0.5)), 120000);
  EXPECT_EQ(ms(BackoffDelay(b, 0, 0.0)), 800);   // -20 %
  EXPECT_EQ(ms(BackoffDelay(b, 100, 0.0)), 96000);
  EXPECT_NEAR(ms(BackoffDelay(b, 0, 0.999999)), 1200, 1);  // +20 %
  Backoff fast{milliseconds(10), 2, 0, milliseconds(50)};
  EXPECT_EQ(ms(BackoffDelay(fast, 0, 0.3)), 10);
  EXPECT_EQ(ms(BackoffDelay(fast, 2, 0.3)), 40);
  EXPECT_EQ(ms(BackoffDelay(fast, 3, 0.3)), 50);
}

}  // namespace
}  // namespace calc
