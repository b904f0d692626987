// calc::NewGrpcChannel: a grpc++ channel to calcd's gRPC port with the
// client's SecurityOptions applied, for the generated stub:
//
//   calc::SecurityOptions sec;
//   sec.tls_ca = "ca.pem";                    // TLS, verifying calcd's certificate
//   sec.tls_cert = "client.pem";              // mutual TLS
//   sec.tls_key = "client-key.pem";
//   sec.token = std::getenv("CALC_TOKEN");    // authorization: Bearer <token>
//   auto stub = calculator::v1::CalculatorService::NewStub(calc::NewGrpcChannel("127.0.0.1:50051", sec));
#pragma once

#include <grpcpp/channel.h>

#include <memory>
#include <string>

#include "calc/security.h"

namespace calc {

// NewGrpcChannel returns a channel to target (HOST:PORT, or any grpc++
// target). With TLS (security.tls_on()) it uses grpc::SslCredentials with
// tls_ca as the roots (the system's when empty) and tls_cert/tls_key as
// the client certificate, and tls_server_name as the name to verify
// (grpc's ssl target name override); a token is then sent by
// grpc::AccessTokenCredentials. Without TLS a token is added to every
// call's metadata by an interceptor, and only to a loopback host.
// Throws RpcError (INVALID_ARGUMENT) for bad options or unreadable files.
std::shared_ptr<grpc::Channel> NewGrpcChannel(const std::string& target, const SecurityOptions& security);

}  // namespace calc
