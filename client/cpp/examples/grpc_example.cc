// calc-example-grpc HOST:PORT: Calculate(ADD, 2, 3) and a division by zero
// over gRPC with the generated stub.
#include <grpcpp/grpcpp.h>

#include <iostream>

#include "calc/status_details.h"
#include "calculator/v1/calculator.grpc.pb.h"

int main(int argc, char** argv) {
  std::string target = argc > 1 ? argv[1] : "127.0.0.1:50051";
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto stub = calculator::v1::CalculatorService::NewStub(channel);

  calculator::v1::CalculateRequest req;
  req.set_operator_(calculator::v1::OPERATOR_ADD);
  req.set_lhs(2);
  req.set_rhs(3);
  calculator::v1::CalculateResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::Status st = stub->Calculate(&ctx, req, &resp);
  if (!st.ok()) {
    std::cerr << "Calculate failed: " << st.error_message() << "\n";
    return 1;
  }
  std::cout << "2 + 3 = " << resp.result() << "\n";

  req.set_operator_(calculator::v1::OPERATOR_DIVIDE);
  req.set_lhs(1);
  req.set_rhs(0);
  grpc::ClientContext ctx2;
  st = stub->Calculate(&ctx2, req, &resp);
  calc::ErrorDetails d = calc::DecodeErrorDetails(st);  // grpc-status-details-bin
  std::cout << "1 / 0: " << calc::StatusCodeName(st.error_code()) << " \"" << st.error_message() << "\" reason="
            << (d.error_info ? d.error_info->reason() : "-")
            << " field=" << (d.bad_request && d.bad_request->field_violations_size() ? d.bad_request->field_violations(0).field() : "-")
            << "\n";
  return 0;
}
