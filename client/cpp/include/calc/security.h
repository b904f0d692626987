// TLS and bearer-token options shared by both C++ clients, named as the Go
// client's flags and the Python client's keyword arguments: tls, tls_ca,
// tls_cert, tls_key, tls_server_name and token.
//
// Any of the tls_* options turns TLS on (tls alone trusts the system's
// roots). Raw TCP then runs TLS 1.3 with ALPN "calc/1" (PROTOCOL.md, "TLS");
// gRPC uses grpc::SslCredentials. A token is sent as "authorization: Bearer
// <token>" metadata on every call, and, like grpc-go's
// RequireTransportSecurity, it is refused in plaintext to a host that is not
// "localhost" or a loopback IP address: anyone on the path could read it and
// call as its principal.
#pragma once

#include <grpcpp/support/status.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace calc {

// kAlpn is the ALPN protocol of calc's raw TCP protocol over TLS.
inline constexpr std::string_view kAlpn = "calc/1";

// RpcError is thrown by TcpClient::Connect (and stored in Ping futures)
// when the connection cannot be used, and by the option checks.
class RpcError : public std::runtime_error {
 public:
  explicit RpcError(grpc::Status status);
  const grpc::Status& status() const { return status_; }

 private:
  grpc::Status status_;
};

// SecurityOptions is a client's TLS and token configuration. The default
// value is plaintext without a token.
struct SecurityOptions {
  // tls turns TLS on, trusting the system's roots unless tls_ca is set
  // (--tls).
  bool tls = false;
  // tls_ca is a PEM file of the CA certificates to trust instead of the
  // system's (--tls-ca).
  std::string tls_ca;
  // tls_cert and tls_key are a PEM client certificate (chain) and its
  // private key, for a server that requires mutual TLS (--tls-cert,
  // --tls-key). They go together.
  std::string tls_cert, tls_key;
  // tls_server_name is the name the server's certificate is verified
  // against (and sent as SNI when it is not an IP address); empty means
  // the host of each address dialled (--tls-server-name).
  std::string tls_server_name;
  // token is sent as "authorization: Bearer <token>" on every call
  // (--token, or the CALC_TOKEN environment variable in the runner).
  std::string token;

  // tls_on reports whether any of the tls options asks for TLS.
  bool tls_on() const {
    return tls || !tls_ca.empty() || !tls_cert.empty() || !tls_key.empty() || !tls_server_name.empty();
  }
};

// IsLoopbackHost reports whether host ("localhost", "127.0.0.1", "::1",
// "[::1]") is this machine: localhost or a loopback IP address.
bool IsLoopbackHost(std::string_view host);

// CheckSecurity checks options for a connection to host: tls_cert and
// tls_key go together, a token is one line, and a token is never sent in
// plaintext to a host that is not loopback. Its error is INVALID_ARGUMENT.
grpc::Status CheckSecurity(const SecurityOptions& options, std::string_view host);

}  // namespace calc
