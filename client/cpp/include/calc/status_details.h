// Error details shared by both transports. A failed call's grpc::Status
// carries, in error_details(), the serialized google.rpc.Status: grpc++ fills
// it from the grpc-status-details-bin trailer, calc::TcpClient from the
// STATUS frame. DecodeErrorDetails unpacks the details calcd sends.
#pragma once

#include <grpcpp/support/status.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace calc {

struct ErrorDetails {
  bool parsed = false;                              // error_details() held a google.rpc.Status
  std::vector<std::string> type_urls;               // every detail's type URL, in order
  std::optional<google::rpc::ErrorInfo> error_info;    // the first ErrorInfo detail
  std::optional<google::rpc::BadRequest> bad_request;  // the first BadRequest detail
};

// DecodeErrorDetails decodes status.error_details(). Details of other types
// are listed in type_urls only; an empty or unparsable blob gives parsed = false.
ErrorDetails DecodeErrorDetails(const grpc::Status& status);

// StatusCodeName returns "OK", "CANCELLED", ... "UNAUTHENTICATED", or "CODE(n)".
std::string StatusCodeName(int code);
// StatusCodeFromName is the inverse of StatusCodeName; -1 for an unknown name.
int StatusCodeFromName(std::string_view name);

// ToGrpcStatus turns a google.rpc.Status into a grpc::Status whose
// error_details() is the serialized google.rpc.Status, as grpc++ reports it.
grpc::Status ToGrpcStatus(const google::rpc::Status& st);

}  // namespace calc
