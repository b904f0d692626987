// calc-example-tcp HOST:PORT: the same calls over calc's raw TCP protocol with
// calc::TcpClient, plus a short CalculateStream.
#include <iostream>

#include "calc/status_details.h"
#include "calc/tcp_client.h"

int main(int argc, char** argv) {
  std::string target = argc > 1 ? argv[1] : "127.0.0.1:4000";
  std::unique_ptr<calc::TcpClient> client;
  try {
    client = calc::TcpClient::Connect(target);
  } catch (const calc::RpcError& e) {
    std::cerr << "connect: " << e.what() << "\n";
    return 1;
  }

  calculator::v1::CalculateRequest req;
  req.set_operator_(calculator::v1::OPERATOR_ADD);
  req.set_lhs(2);
  req.set_rhs(3);
  calc::CallContext ctx;
  ctx.set_timeout(std::chrono::seconds(5));
  calc::Result<calculator::v1::CalculateResponse> r = client->Calculate(ctx, req).get();
  if (!r.ok()) {
    std::cerr << "Calculate failed: " << r.status.error_message() << "\n";
    return 1;
  }
  std::cout << "2 + 3 = " << r.value.result() << "\n";

  req.set_operator_(calculator::v1::OPERATOR_DIVIDE);
  req.set_lhs(1);
  req.set_rhs(0);
  calc::CallContext ctx2;
  auto bad = client->Calculate(ctx2, req).get();
  calc::ErrorDetails d = calc::DecodeErrorDetails(bad.status);  // the STATUS frame's google.rpc.Status
  std::cout << "1 / 0: " << calc::StatusCodeName(bad.status.error_code()) << " \"" << bad.status.error_message()
            << "\" reason=" << (d.error_info ? d.error_info->reason() : "-")
            << " field=" << (d.bad_request && d.bad_request->field_violations_size() ? d.bad_request->field_violations(0).field() : "-")
            << "\n";

  calc::CallContext sctx;
  sctx.set_timeout(std::chrono::seconds(5));
  auto stream = client->CalculateStream(sctx);
  for (uint64_t i = 1; i <= 3; i++) {
    calculator::v1::CalculateStreamRequest m;
    m.set_id(i);
    m.mutable_calculation()->set_operator_(calculator::v1::OPERATOR_POWER);
    m.mutable_calculation()->set_lhs(10);
    m.mutable_calculation()->set_rhs(static_cast<int64_t>(i));
    stream->Write(m);
  }
  stream->WritesDone();
  calculator::v1::CalculateStreamResponse m;
  while (stream->Read(&m)) std::cout << "stream id " << m.id() << ": " << m.result() << "\n";
  grpc::Status st = stream->Finish();
  std::cout << "stream status: " << calc::StatusCodeName(st.error_code()) << "\n";
  return 0;
}
