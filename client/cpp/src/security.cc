#include "calc/security.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include "calc/status_details.h"

namespace calc {

RpcError::RpcError(grpc::Status status)
    : std::runtime_error(StatusCodeName(status.error_code()) + ": " + status.error_message()),
      status_(std::move(status)) {}

bool IsLoopbackHost(std::string_view host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") return true;
  std::string h(host);
  in_addr a4;
  if (::inet_pton(AF_INET, h.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6;
  if (::inet_pton(AF_INET6, h.c_str(), &a6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;  // ::ffff:127.0.0.1, as Go's IsLoopback
  }
  return false;
}

grpc::Status CheckSecurity(const SecurityOptions& o, std::string_view host) {
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "tls_cert and tls_key go together");
  }
  if (o.token.find_first_of("\r\n") != std::string::npos) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "token must be on one line");
  }
  if (!o.token.empty() && !o.tls_on() && !IsLoopbackHost(host)) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "refusing to send the token in plaintext to " + std::string(host) +
                            ", which is not a loopback address: use TLS (tls or tls_ca)");
  }
  return grpc::Status::OK;
}

}  // namespace calc
