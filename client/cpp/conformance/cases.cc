// Runs every case of testdata/conformance/cases.json over gRPC (grpc++ and
// the generated stub) and over raw TCP (calc::TcpClient). The checks are
// shared: each transport only implements the calls.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <latch>
#include <mutex>
#include <sstream>

#include "calc/grpc_channel.h"
#include "calc/status_details.h"
#include "calc/tcp_client.h"
#include "calculator/v1/calculator.grpc.pb.h"
#include "runner.h"

namespace calc::conformance {

namespace {

using calculator::v1::CalculateRequest;
using calculator::v1::CalculateResponse;
using calculator::v1::CalculateStreamRequest;
using calculator::v1::CalculateStreamResponse;
using calculator::v1::CalculatorService;
using calculator::v1::EvaluateRequest;
using calculator::v1::EvaluateResponse;
using google::protobuf::Message;
using nlohmann::json;
using std::chrono::milliseconds;

constexpr milliseconds kUnaryTimeout{10000};
constexpr milliseconds kStreamTimeout{30000};

std::string Describe(const grpc::Status& st) {
  return StatusCodeName(st.error_code()) + " \"" + st.error_message() + "\"";
}

// Transport is one way of making the calls the cases need.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual std::string name() const = 0;
  // Unary calls rpc ("Calculate", "Evaluate").
  virtual grpc::Status Unary(const std::string& rpc, const Message& req, Message* resp) = 0;
  // StreamAll writes every request, half-closes, then reads every response.
  virtual grpc::Status StreamAll(const std::vector<CalculateStreamRequest>& reqs,
                                 std::vector<CalculateStreamResponse>* out) = 0;
  // StreamIdle opens a stream with a deadline and sends nothing, never
  // half-closing; it reads until the call ends.
  virtual grpc::Status StreamIdle(milliseconds timeout, int* received) = 0;
  // StreamCancel writes first, reads one response into *got, then cancels.
  virtual grpc::Status StreamCancel(const CalculateStreamRequest& first, std::optional<CalculateStreamResponse>* got) = 0;
  // Concurrent starts every request at once on one connection / channel.
  virtual void Concurrent(const std::vector<CalculateRequest>& reqs, std::vector<grpc::Status>* statuses,
                          std::vector<CalculateResponse>* resps) = 0;
};

// ---- gRPC --------------------------------------------------------------------------

class GrpcTransport : public Transport {
 public:
  GrpcTransport(const std::string& target, const SecurityOptions& security)
      : channel_(NewGrpcChannel(target, security)), stub_(CalculatorService::NewStub(channel_)) {}
  std::string name() const override { return "grpc"; }

  grpc::Status Unary(const std::string& rpc, const Message& req, Message* resp) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kUnaryTimeout);
    if (rpc == "Calculate") {
      return stub_->Calculate(&ctx, static_cast<const CalculateRequest&>(req), static_cast<CalculateResponse*>(resp));
    }
    if (rpc == "Evaluate") {
      return stub_->Evaluate(&ctx, static_cast<const EvaluateRequest&>(req), static_cast<EvaluateResponse*>(resp));
    }
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "runner: no unary rpc " + rpc);
  }

  grpc::Status StreamAll(const std::vector<CalculateStreamRequest>& reqs,
                         std::vector<CalculateStreamResponse>* out) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kStreamTimeout);
    auto rw = stub_->CalculateStream(&ctx);
    for (const auto& r : reqs) {
      if (!rw->Write(r)) break;
    }
    rw->WritesDone();
    CalculateStreamResponse m;
    while (rw->Read(&m)) out->push_back(m);
    return rw->Finish();
  }

  grpc::Status StreamIdle(milliseconds timeout, int* received) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    auto rw = stub_->CalculateStream(&ctx);
    CalculateStreamResponse m;
    while (rw->Read(&m)) ++*received;
    return rw->Finish();
  }

  grpc::Status StreamCancel(const CalculateStreamRequest& first, std::optional<CalculateStreamResponse>* got) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kStreamTimeout);
    auto rw = stub_->CalculateStream(&ctx);
    CalculateStreamResponse m;
    if (rw->Write(first) && rw->Read(&m)) *got = m;
    ctx.TryCancel();
    while (rw->Read(&m)) {
    }
    return rw->Finish();
  }

  void Concurrent(const std::vector<CalculateRequest>& reqs, std::vector<grpc::Status>* statuses,
                  std::vector<CalculateResponse>* resps) override {
    size_t n = reqs.size();
    statuses->assign(n, grpc::Status());
    resps->assign(n, CalculateResponse());
    std::vector<std::unique_ptr<grpc::ClientContext>> ctxs(n);
    std::latch done(static_cast<std::ptrdiff_t>(n));
    auto deadline = std::chrono::system_clock::now() + kStreamTimeout;
    for (size_t i = 0; i < n; i++) {
      ctxs[i] = std::make_unique<grpc::ClientContext>();
      ctxs[i]->set_deadline(deadline);
      stub_->async()->Calculate(ctxs[i].get(), &reqs[i], &(*resps)[i], [statuses, i, &done](grpc::Status st) {
        (*statuses)[i] = std::move(st);
        done.count_down();
      });
    }
    done.wait();
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<CalculatorService::Stub> stub_;
};

// ---- raw TCP -------------------------------------------------------------------------

class TcpTransport : public Transport {
 public:
  TcpTransport(std::string target, const SecurityOptions& security) : target_(std::move(target)) {
    options_.security = security;
  }
  std::string name() const override { return "tcp"; }

  grpc::Status Unary(const std::string& rpc, const Message& req, Message* resp) override {
    TcpClient* c;
    if (auto st = Client(&c); !st.ok()) return st;
    CallContext ctx;
    ctx.set_timeout(kUnaryTimeout);
    if (rpc == "Calculate") {
      auto r = c->Calculate(ctx, static_cast<const CalculateRequest&>(req)).get();
      resp->CopyFrom(r.value);
      return r.status;
    }
    if (rpc == "Evaluate") {
      auto r = c->Evaluate(ctx, static_cast<const EvaluateRequest&>(req)).get();
      resp->CopyFrom(r.value);
      return r.status;
    }
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "runner: no unary rpc " + rpc);
  }

  grpc::Status StreamAll(const std::vector<CalculateStreamRequest>& reqs,
                         std::vector<CalculateStreamResponse>* out) override {
    TcpClient* c;
    if (auto st = Client(&c); !st.ok()) return st;
    CallContext ctx;
    ctx.set_timeout(kStreamTimeout);
    auto s = c->CalculateStream(ctx);
    for (const auto& r : reqs) {
      if (!s->Write(r)) break;
    }
    s->WritesDone();
    CalculateStreamResponse m;
    while (s->Read(&m)) out->push_back(m);
    return s->Finish();
  }

  grpc::Status StreamIdle(milliseconds timeout, int* received) override {
    TcpClient* c;
    if (auto st = Client(&c); !st.ok()) return st;
    CallContext ctx;
    ctx.set_timeout(timeout);
    auto s = c->CalculateStream(ctx);
    CalculateStreamResponse m;
    while (s->Read(&m)) ++*received;
    return s->Finish();
  }

  grpc::Status StreamCancel(const CalculateStreamRequest& first, std::optional<CalculateStreamResponse>* got) override {
    TcpClient* c;
    if (auto st = Client(&c); !st.ok()) return st;
    CallContext ctx;
    ctx.set_timeout(kStreamTimeout);
    auto s = c->CalculateStream(ctx);
    CalculateStreamResponse m;
    if (s->Write(first) && s->Read(&m)) *got = m;
    ctx.TryCancel();  // CANCEL frame; the server answers with the final STATUS
    while (s->Read(&m)) {
    }
    return s->Finish();
  }

  void Concurrent(const std::vector<CalculateRequest>& reqs, std::vector<grpc::Status>* statuses,
                  std::vector<CalculateResponse>* resps) override {
    size_t n = reqs.size();
    statuses->assign(n, grpc::Status());
    resps->assign(n, CalculateResponse());
    TcpClient* c;
    if (auto st = Client(&c); !st.ok()) {
      statuses->assign(n, st);
      return;
    }
    std::vector<std::unique_ptr<CallContext>> ctxs(n);
    std::vector<std::future<Result<CalculateResponse>>> futures;
    futures.reserve(n);
    for (size_t i = 0; i < n; i++) {
      ctxs[i] = std::make_unique<CallContext>();
      ctxs[i]->set_timeout(kStreamTimeout);
      futures.push_back(c->Calculate(*ctxs[i], reqs[i]));  // all on one connection
    }
    for (size_t i = 0; i < n; i++) {
      auto r = futures[i].get();
      (*statuses)[i] = r.status;
      (*resps)[i] = r.value;
    }
  }

 private:
  // Client returns the shared client (which reconnects by itself), made
  // on first use.
  grpc::Status Client(TcpClient** out) {
    if (!client_) {
      try {
        client_ = TcpClient::Connect(target_, options_);
      } catch (const RpcError& e) {
        return e.status();
      }
    }
    *out = client_.get();
    return grpc::Status::OK;
  }

  std::string target_;
  TcpClient::Options options_;
  std::unique_ptr<TcpClient> client_;
};

// ---- the checks -----------------------------------------------------------------------

std::optional<std::string> CheckError(const json& want, const grpc::Status& st, const std::string& got_response) {
  std::string want_code = want.at("code");
  if (st.ok()) return "got response " + got_response + ", want error " + want_code;
  if (StatusCodeName(st.error_code()) != want_code) return "status " + Describe(st) + ", want " + want_code;
  if (want.contains("message") && st.error_message() != want["message"].get<std::string>()) {
    return "message \"" + st.error_message() + "\", want " + want["message"].dump();
  }
  ErrorDetails d = DecodeErrorDetails(st);
  if (want.contains("reason")) {
    if (!d.error_info) return "no google.rpc.ErrorInfo detail (status " + Describe(st) + "), want reason " + want["reason"].dump();
    if (d.error_info->reason() != want["reason"].get<std::string>()) {
      return "ErrorInfo reason " + d.error_info->reason() + ", want " + want["reason"].dump();
    }
  }
  if (want.contains("field")) {
    if (!d.bad_request) return "no google.rpc.BadRequest detail, want field " + want["field"].dump();
    std::string fields;
    bool found = false;
    for (const auto& fv : d.bad_request->field_violations()) {
      fields += (fields.empty() ? "" : ",") + fv.field();
      found = found || fv.field() == want["field"].get<std::string>();
    }
    if (!found) return "BadRequest fields [" + fields + "], want " + want["field"].dump();
  }
  if (want.contains("offset")) {
    if (!d.error_info) return "no google.rpc.ErrorInfo detail, want offset " + want["offset"].dump();
    auto it = d.error_info->metadata().find("offset");
    std::string want_offset = std::to_string(want["offset"].get<int64_t>());
    if (it == d.error_info->metadata().end()) return "ErrorInfo has no offset, want " + want_offset;
    if (it->second != want_offset) return "ErrorInfo offset " + it->second + ", want " + want_offset;
  }
  return std::nullopt;
}

std::optional<std::string> RunUnary(const json& c, Transport& t) {
  std::string rpc = c.at("rpc");
  std::unique_ptr<Message> req, resp, want;
  if (rpc == "Calculate") {
    req = std::make_unique<CalculateRequest>();
    resp = std::make_unique<CalculateResponse>();
    want = std::make_unique<CalculateResponse>();
  } else if (rpc == "Evaluate") {
    req = std::make_unique<EvaluateRequest>();
    resp = std::make_unique<EvaluateResponse>();
    want = std::make_unique<EvaluateResponse>();
  } else {
    return "unknown unary rpc " + rpc;
  }
  if (auto err = FromJson(c.at("request"), req.get())) return err;
  grpc::Status st = t.Unary(rpc, *req, resp.get());
  if (c.contains("response")) {
    if (auto err = FromJson(c["response"], want.get())) return err;
    if (!st.ok()) return "status " + Describe(st) + ", want response " + ToJson(*want);
    if (!SameMessage(*resp, *want)) return "response " + ToJson(*resp) + ", want " + ToJson(*want);
    return std::nullopt;
  }
  if (c.contains("error")) return CheckError(c["error"], st, ToJson(*resp));
  return "case has neither response nor error";
}

std::optional<std::string> CompareStream(const std::vector<CalculateStreamResponse>& got,
                                         const std::vector<CalculateStreamResponse>& want) {
  for (size_t i = 0; i < std::min(got.size(), want.size()); i++) {
    if (!SameMessage(got[i], want[i])) {
      return "response " + std::to_string(i) + " is " + ToJson(got[i]) + ", want " + ToJson(want[i]);
    }
  }
  if (got.size() != want.size()) {
    return std::to_string(got.size()) + " responses, want " + std::to_string(want.size());
  }
  return std::nullopt;
}

std::optional<std::string> RunStream(const json& c, Transport& t) {
  std::vector<CalculateStreamRequest> reqs;
  std::vector<CalculateStreamResponse> want, got;
  for (const auto& j : c.at("requests")) {
    if (auto err = FromJson(j, &reqs.emplace_back())) return err;
  }
  for (const auto& j : c.at("responses")) {
    if (auto err = FromJson(j, &want.emplace_back())) return err;
  }
  grpc::Status st = t.StreamAll(reqs, &got);
  if (c.contains("error")) return CheckError(c["error"], st, std::to_string(got.size()) + " responses");
  if (!st.ok()) return "status " + Describe(st) + " after " + std::to_string(got.size()) + " responses, want OK";
  return CompareStream(got, want);
}

std::optional<std::string> RunStreamGenerated(const json& c, Transport& t) {
  int64_t count = c.at("count");
  calculator::v1::Operator op;
  if (!calculator::v1::Operator_Parse(c.at("operator").get<std::string>(), &op)) return "unknown operator";
  int64_t rhs = std::stoll(c.at("rhs").get<std::string>());
  if (op != calculator::v1::OPERATOR_MULTIPLY) return "runner computes expected results for OPERATOR_MULTIPLY only";
  std::vector<CalculateStreamRequest> reqs;
  std::vector<CalculateStreamResponse> want, got;
  for (int64_t i = 1; i <= count; i++) {
    auto& r = reqs.emplace_back();
    r.set_id(static_cast<uint64_t>(i));
    r.mutable_calculation()->set_operator_(op);
    r.mutable_calculation()->set_lhs(i);
    r.mutable_calculation()->set_rhs(rhs);
    int64_t product;
    if (__builtin_mul_overflow(i, rhs, &product)) return "expected result overflows";
    auto& w = want.emplace_back();
    w.set_id(static_cast<uint64_t>(i));
    w.set_result(product);
  }
  grpc::Status st = t.StreamAll(reqs, &got);
  if (!st.ok()) return "status " + Describe(st) + " after " + std::to_string(got.size()) + " responses, want OK";
  return CompareStream(got, want);
}

std::optional<std::string> RunStreamDeadline(const json& c, Transport& t) {
  milliseconds timeout(c.at("timeout_ms").get<int64_t>());
  int received = 0;
  auto start = Clock::now();
  grpc::Status st = t.StreamIdle(timeout, &received);
  auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  if (received != 0) return std::to_string(received) + " messages on a stream that sent none";
  if (auto err = CheckError(c.at("error"), st, "OK")) return err;
  if (elapsed + milliseconds(20) < timeout) {
    return "ended after " + std::to_string(elapsed.count()) + " ms, before the " + std::to_string(timeout.count()) +
           " ms deadline";
  }
  return std::nullopt;
}

std::optional<std::string> RunStreamCancel(const json& c, Transport& t) {
  CalculateStreamRequest first;
  first.set_id(1);
  first.mutable_calculation()->set_operator_(calculator::v1::OPERATOR_ADD);
  first.mutable_calculation()->set_lhs(1);
  first.mutable_calculation()->set_rhs(1);
  CalculateStreamResponse want;
  want.set_id(1);
  want.set_result(2);
  std::optional<CalculateStreamResponse> got;
  grpc::Status st = t.StreamCancel(first, &got);
  if (!got) return "no response before the cancel (status " + Describe(st) + ")";
  if (!SameMessage(*got, want)) return "response " + ToJson(*got) + ", want " + ToJson(want);
  return CheckError(c.at("error"), st, "OK");
}

std::optional<std::string> RunConcurrent(const json& c, Transport& t) {
  int64_t count = c.at("count");
  if (c.at("rpc") != "Calculate") return "concurrent cases of rpc " + c["rpc"].dump() + " are not known";
  std::vector<CalculateRequest> reqs(static_cast<size_t>(count));
  for (int64_t i = 1; i <= count; i++) {
    auto& r = reqs[static_cast<size_t>(i - 1)];
    r.set_operator_(calculator::v1::OPERATOR_ADD);
    r.set_lhs(i);
    r.set_rhs(i);
  }
  std::vector<grpc::Status> statuses;
  std::vector<CalculateResponse> resps;
  t.Concurrent(reqs, &statuses, &resps);
  int bad = 0;
  std::string first;
  for (int64_t i = 1; i <= count; i++) {
    size_t k = static_cast<size_t>(i - 1);
    std::string why;
    if (!statuses[k].ok()) {
      why = "call " + std::to_string(i) + ": " + Describe(statuses[k]);
    } else if (resps[k].result() != 2 * i) {
      why = "call " + std::to_string(i) + ": result " + std::to_string(resps[k].result()) + ", want " +
            std::to_string(2 * i);
    }
    if (!why.empty() && bad++ == 0) first = why;
  }
  if (bad) return std::to_string(bad) + " of " + std::to_string(count) + " calls wrong; first: " + first;
  return std::nullopt;
}

std::optional<std::string> RunCase(const json& c, Transport& t) {
  std::string kind = c.value("kind", "");
  if (kind == "unary") return RunUnary(c, t);
  if (kind == "stream") return RunStream(c, t);
  if (kind == "stream_generated") return RunStreamGenerated(c, t);
  if (kind == "stream_deadline") return RunStreamDeadline(c, t);
  if (kind == "stream_cancel") return RunStreamCancel(c, t);
  if (kind == "concurrent") return RunConcurrent(c, t);
  return "unknown case kind \"" + kind + "\"";
}

}  // namespace

void RunCases(const json& file, const std::string& grpc_target, const std::string& tcp_target,
              const SecurityOptions& security, Tally& tally) {
  const json& cases = file.at("cases");
  if (cases.empty()) tally.Fail("cases.json", "all", "no cases");
  GrpcTransport grpc_transport(grpc_target, security);
  TcpTransport tcp_transport(tcp_target, security);
  for (Transport* t : std::initializer_list<Transport*>{&grpc_transport, &tcp_transport}) {
    for (const auto& c : cases) {
      std::string name = c.value("name", "?");
      std::optional<std::string> why;
      try {
        why = RunCase(c, *t);
      } catch (const std::exception& e) {
        why = std::string("exception: ") + e.what();
      }
      tally.Record(name, t->name(), why);
    }
  }
}

}  // namespace calc::conformance
