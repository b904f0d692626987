#include "calc/status_details.h"

namespace calc {

namespace {
constexpr const char* kCodeNames[] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
    "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
};
constexpr int kNumCodes = sizeof(kCodeNames) / sizeof(kCodeNames[0]);
}  // namespace

ErrorDetails DecodeErrorDetails(const grpc::Status& status) {
  ErrorDetails out;
  const std::string& blob = status.error_details();
  google::rpc::Status st;
  if (blob.empty() || !st.ParseFromString(blob)) return out;
  out.parsed = true;
  for (const auto& any : st.details()) {
    out.type_urls.push_back(any.type_url());
    if (!out.error_info && any.Is<google::rpc::ErrorInfo>()) {
      google::rpc::ErrorInfo info;
      if (any.UnpackTo(&info)) out.error_info = std::move(info);
    } else if (!out.bad_request && any.Is<google::rpc::BadRequest>()) {
      google::rpc::BadRequest br;
      if (any.UnpackTo(&br)) out.bad_request = std::move(br);
    }
  }
  return out;
}

std::string StatusCodeName(int code) {
  if (code >= 0 && code < kNumCodes) return kCodeNames[code];
  return "CODE(" + std::to_string(code) + ")";
}

int StatusCodeFromName(std::string_view name) {
  for (int i = 0; i < kNumCodes; i++) {
    if (name == kCodeNames[i]) return i;
  }
  return -1;
}

grpc::Status ToGrpcStatus(const google::rpc::Status& st) {
  if (st.code() == 0) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(st.code()), st.message(), st.SerializeAsString());
}

}  // namespace calc
