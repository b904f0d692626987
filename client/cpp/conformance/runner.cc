// calc-conformance: runs testdata/conformance/cases.json over gRPC and raw TCP
// and decodes testdata/wire/vectors.json, then prints "N passed, N failed".
//
//   calc-conformance --grpc 127.0.0.1:50051 --tcp 127.0.0.1:4000
//                    [--cases PATH] [--vectors PATH]
//                    [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]
//                    [--tls-server-name NAME] [--token TOKEN]
//
// With --tls (or any of the other --tls options) both transports connect
// over TLS (raw TCP: TLS 1.3, ALPN calc/1); --token, or the CALC_TOKEN
// environment variable (which ps cannot show), is sent as
// "authorization: Bearer <token>" on every call.
#include "runner.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

namespace calc::conformance {

void Tally::Fail(const std::string& name, const std::string& transport, const std::string& why) {
  failed_++;
  std::cout << "FAIL " << name << " [" << transport << "]: " << why << std::endl;
}

std::optional<std::string> FromJson(const nlohmann::json& j, google::protobuf::Message* msg) {
  auto st = google::protobuf::util::JsonStringToMessage(j.dump(), msg);
  if (!st.ok()) return "bad " + msg->GetTypeName() + " JSON " + j.dump() + ": " + std::string(st.message());
  return std::nullopt;
}

std::string ToJson(const google::protobuf::Message& msg) {
  std::string out;
  auto st = google::protobuf::util::MessageToJsonString(msg, &out);
  if (!st.ok()) return "<" + msg.ShortDebugString() + ">";
  return out;
}

bool SameMessage(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

}  // namespace calc::conformance

namespace {

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(in);
}

void Usage() {
  std::cerr << "usage: calc-conformance --grpc HOST:PORT --tcp HOST:PORT [--cases PATH] [--vectors PATH]\n"
               "                        [--tls] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE]\n"
               "                        [--tls-server-name NAME] [--token TOKEN (default: env CALC_TOKEN)]\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::string grpc_target, tcp_target;
  std::string cases_path = std::string(CALC_REPO_ROOT) + "/testdata/conformance/cases.json";
  std::string vectors_path = std::string(CALC_REPO_ROOT) + "/testdata/wire/vectors.json";
  calc::SecurityOptions security;
  if (const char* t = std::getenv("CALC_TOKEN")) security.token = t;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        Usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--grpc") {
      grpc_target = value();
    } else if (a == "--tcp") {
      tcp_target = value();
    } else if (a == "--cases") {
      cases_path = value();
    } else if (a == "--vectors") {
      vectors_path = value();
    } else if (a == "--tls") {
      security.tls = true;
    } else if (a == "--tls-ca") {
      security.tls_ca = value();
    } else if (a == "--tls-cert") {
      security.tls_cert = value();
    } else if (a == "--tls-key") {
      security.tls_key = value();
    } else if (a == "--tls-server-name") {
      security.tls_server_name = value();
    } else if (a == "--token") {
      security.token = value();
    } else {
      Usage();
      return 2;
    }
  }
  if (grpc_target.empty() || tcp_target.empty()) {
    Usage();
    return 2;
  }
  if (security.tls_cert.empty() != security.tls_key.empty()) {
    std::cerr << "calc-conformance: --tls-cert and --tls-key go together\n";
    return 2;
  }

  calc::conformance::Tally tally;
  try {
    calc::conformance::RunVectors(ReadJson(vectors_path), tally);
  } catch (const std::exception& e) {
    tally.Fail("vectors.json", "vector", e.what());
  }
  try {
    calc::conformance::RunCases(ReadJson(cases_path), grpc_target, tcp_target, security, tally);
  } catch (const std::exception& e) {
    tally.Fail("cases.json", "all", e.what());
  }
  std::cout << tally.passed() << " passed, " << tally.failed() << " failed" << std::endl;
  return tally.failed() == 0 ? 0 : 1;
}
