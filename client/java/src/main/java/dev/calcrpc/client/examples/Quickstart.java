package dev.calcrpc.client.examples;

import dev.calcrpc.calculator.v1.CalculateRequest;
import dev.calcrpc.calculator.v1.CalculatorServiceGrpc;
import dev.calcrpc.calculator.v1.EvaluateRequest;
import dev.calcrpc.calculator.v1.Operator;
import dev.calcrpc.client.ErrorDetails;
import dev.calcrpc.client.tcp.CalcTcpClient;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import java.util.concurrent.TimeUnit;

/** The README's example: one call over gRPC, one over raw TCP, and an error read the same way on both. */
public final class Quickstart {
  public static void main(String[] args) throws Exception {
    String grpcTarget = args.length > 0 ? args[0] : "127.0.0.1:50051";
    String tcpHost = args.length > 1 ? args[1] : "127.0.0.1";
    int tcpPort = args.length > 2 ? Integer.parseInt(args[2]) : 4000;

    CalculateRequest add = CalculateRequest.newBuilder()
        .setOperator(Operator.OPERATOR_ADD).setLhs(2).setRhs(3).build();

    // gRPC: the standard grpc-java blocking stub.
    ManagedChannel channel = ManagedChannelBuilder.forTarget(grpcTarget).usePlaintext().build();
    try {
      CalculatorServiceGrpc.CalculatorServiceBlockingStub stub = CalculatorServiceGrpc.newBlockingStub(channel);
      System.out.println("gRPC: 2 + 3 = " + stub.withDeadlineAfter(5, TimeUnit.SECONDS).calculate(add).getResult());
    } finally {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }

    // Raw TCP: calls return futures; await() blocks and throws StatusRuntimeException like a stub.
    try (CalcTcpClient calc = CalcTcpClient.connect(tcpHost, tcpPort)) {
      System.out.println("TCP:  2 + 3 = " + calc.withDeadlineAfter(5, TimeUnit.SECONDS).calculate(add).await().getResult());
      System.out.println("TCP:  7 / 2 = " + calc.evaluate(EvaluateRequest.newBuilder().setExpression("7 / 2").build()).await().getResult());
      try {
        calc.evaluate(EvaluateRequest.newBuilder().setExpression("1 + 2 / 0").build()).await();
      } catch (StatusRuntimeException e) { // same handling for both transports
        ErrorDetails d = ErrorDetails.of(e);
        System.out.println("TCP:  " + d.code() + " " + d.message() + " reason=" + d.reason() + " fields=" + d.violationFields());
      }
    }
  }
}
