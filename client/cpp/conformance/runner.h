// Shared pieces of the conformance runner (calc-conformance).
#pragma once

#include <google/protobuf/message.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "calc/security.h"

namespace calc::conformance {

// Tally counts checks and prints one line per failure.
class Tally {
 public:
  void Pass() { passed_++; }
  void Fail(const std::string& name, const std::string& transport, const std::string& why);
  void Record(const std::string& name, const std::string& transport, const std::optional<std::string>& failure) {
    if (failure) {
      Fail(name, transport, *failure);
    } else {
      Pass();
    }
  }
  int passed() const { return passed_; }
  int failed() const { return failed_; }

 private:
  int passed_ = 0, failed_ = 0;
};

// FromJson parses protobuf JSON into msg; the error text, or nullopt.
std::optional<std::string> FromJson(const nlohmann::json& j, google::protobuf::Message* msg);
// ToJson prints msg as compact protobuf JSON, for failure messages.
std::string ToJson(const google::protobuf::Message& msg);
// SameMessage compares by value (never by encoded bytes).
bool SameMessage(const google::protobuf::Message& a, const google::protobuf::Message& b);

// RunVectors decodes every vector of testdata/wire/vectors.json.
void RunVectors(const nlohmann::json& file, Tally& tally);

// RunCases runs every case of testdata/conformance/cases.json over gRPC and
// over raw TCP, both with security (TLS, token) applied.
void RunCases(const nlohmann::json& file, const std::string& grpc_target, const std::string& tcp_target,
              const SecurityOptions& security, Tally& tally);

}  // namespace calc::conformance
