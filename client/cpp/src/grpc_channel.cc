#include "calc/grpc_channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_interceptor.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace calc {

namespace {

std::string ReadPem(const char* option, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw RpcError(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                std::string(option) + " " + path + ": " + std::strerror(errno)));
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// TokenInterceptor adds "authorization: Bearer <token>" to every call of a
// plaintext (loopback) channel, where grpc refuses call credentials.
class TokenInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(const std::string& value) : value_(value) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", value_});
    }
    methods->Proceed();
  }

 private:
  const std::string value_;
};

class TokenInterceptorFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(std::string token) : value_("Bearer " + std::move(token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo*) override {
    return new TokenInterceptor(value_);
  }

 private:
  const std::string value_;
};

// TargetHost is the host of a HOST:PORT target ("" if it has no port).
std::string TargetHost(const std::string& target) {
  auto colon = target.rfind(':');
  if (colon == std::string::npos) return target;
  std::string host = target.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host;
}

}  // namespace

std::shared_ptr<grpc::Channel> NewGrpcChannel(const std::string& target, const SecurityOptions& s) {
  // A target with a scheme (dns:///name:port) is checked by its name.
  std::string host = TargetHost(target.find("://") == std::string::npos ? target
                                                                         : target.substr(target.find("://") + 3));
  if (auto st = CheckSecurity(s, host); !st.ok()) throw RpcError(st);
  grpc::ChannelArguments args;
  if (!s.tls_on()) {
    if (s.token.empty()) return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
    interceptors.push_back(std::make_unique<TokenInterceptorFactory>(s.token));
    return grpc::experimental::CreateCustomChannelWithInterceptors(target, grpc::InsecureChannelCredentials(), args,
                                                                   std::move(interceptors));
  }
  grpc::SslCredentialsOptions ssl;
  if (!s.tls_ca.empty()) ssl.pem_root_certs = ReadPem("tls_ca", s.tls_ca);
  if (!s.tls_cert.empty()) {
    ssl.pem_cert_chain = ReadPem("tls_cert", s.tls_cert);
    ssl.pem_private_key = ReadPem("tls_key", s.tls_key);
  }
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::SslCredentials(ssl);
  if (!s.token.empty()) creds = grpc::CompositeChannelCredentials(creds, grpc::AccessTokenCredentials(s.token));
  if (!s.tls_server_name.empty()) args.SetSslTargetNameOverride(s.tls_server_name);
  return grpc::CreateCustomChannel(target, creds, args);
}

}  // namespace calc
