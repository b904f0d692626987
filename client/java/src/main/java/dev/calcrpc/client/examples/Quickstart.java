package dev.calcrpc.client.examples;

import dev.calcrpc.calculator.v1.CalculateRequest;
import dev.calcrpc.calculator.v1.CalculatorServiceGrpc;
import dev.calcrpc.calculator.v1.EvaluateRequest;
import dev.calcrpc.calculator.v1.Operator;
import dev.calcrpc.client.ErrorDetails;
import dev.calcrpc.client.grpc.CalcGrpc;
import dev.calcrpc.client.tcp.TcpChannel;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import java.util.concurrent.TimeUnit;

/**
 * The README's example: the same generated blocking stub over gRPC and over raw TCP, and an error
 * read the same way on both.
 *
 * <p>Arguments: the gRPC target and the raw TCP target (default 127.0.0.1:50051 and
 * 127.0.0.1:4000).
 */
public final class Quickstart {
  public static void main(String[] args) throws Exception {
    String grpcTarget = args.length > 0 ? args[0] : "127.0.0.1:50051";
    String tcpTarget = args.length > 1 ? args[1] : "127.0.0.1:4000";

    CalculateRequest add = CalculateRequest.newBuilder()
        .setOperator(Operator.OPERATOR_ADD).setLhs(2).setRhs(3).build();

    ManagedChannel grpc = CalcGrpc.channel(grpcTarget);      // gRPC (grpc-java, plaintext)
    ManagedChannel tcp = TcpChannel.forTarget(tcpTarget).build(); // raw TCP: an io.grpc.Channel too
    try {
      for (ManagedChannel ch : new ManagedChannel[] {grpc, tcp}) {
        String name = ch == grpc ? "gRPC" : "TCP ";
        CalculatorServiceGrpc.CalculatorServiceBlockingStub calc =
            CalculatorServiceGrpc.newBlockingStub(ch).withDeadlineAfter(5, TimeUnit.SECONDS);
        System.out.println(name + ": 2 + 3 = " + calc.calculate(add).getResult());
        System.out.println(name + ": 7 / 2 = " + calc.evaluate(EvaluateRequest.newBuilder().setExpression("7 / 2").build()).getResult());
        try {
          calc.evaluate(EvaluateRequest.newBuilder().setExpression("1 + 2 / 0").build());
        } catch (StatusRuntimeException e) { // the same handling for both transports
          ErrorDetails d = ErrorDetails.of(e);
          System.out.println(name + ": " + d.code() + " " + d.message() + " reason=" + d.reason() + " fields=" + d.violationFields());
        }
      }
    } finally {
      grpc.shutdownNow();
      tcp.shutdownNow();
      grpc.awaitTermination(5, TimeUnit.SECONDS);
      tcp.awaitTermination(5, TimeUnit.SECONDS);
    }
  }
}
