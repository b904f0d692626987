package dev.calcrpc.client.tcp;

import dev.calcrpc.calculator.v1.CalculateRequest;
import dev.calcrpc.calculator.v1.CalculateResponse;
import dev.calcrpc.calculator.v1.CalculateStreamRequest;
import dev.calcrpc.calculator.v1.CalculateStreamResponse;
import dev.calcrpc.calculator.v1.CalculatorServiceGrpc;
import dev.calcrpc.calculator.v1.EvaluateRequest;
import dev.calcrpc.calculator.v1.EvaluateResponse;
import io.grpc.Deadline;
import io.grpc.Metadata;
import io.grpc.stub.StreamObserver;
import java.net.InetSocketAddress;
import java.util.concurrent.TimeUnit;

/**
 * CalculatorService over calc's raw TCP transport: the typed face of a {@link TcpChannel}. Like a
 * gRPC stub it is immutable and cheap to derive: {@code withDeadlineAfter}, {@code withMetadata}
 * and {@code withoutCompression} return clients sharing the same connection.
 *
 * <pre>{@code
 * try (CalcTcpClient calc = CalcTcpClient.connect("127.0.0.1", 4000)) {
 *   long five = calc.calculate(CalculateRequest.newBuilder()
 *       .setOperator(Operator.OPERATOR_ADD).setLhs(2).setRhs(3).build()).await().getResult();
 * }
 * }</pre>
 */
public final class CalcTcpClient implements AutoCloseable {
  private final TcpChannel channel;
  private final TcpCallOptions options;

  private CalcTcpClient(TcpChannel channel, TcpCallOptions options) {
    this.channel = channel;
    this.options = options;
  }

  /** Connects to calcd's raw TCP port. */
  public static CalcTcpClient connect(String host, int port) {
    return new CalcTcpClient(TcpChannel.connect(host, port), TcpCallOptions.DEFAULT);
  }

  /** Connects with connection options. */
  public static CalcTcpClient connect(InetSocketAddress address, TcpChannel.Options options) {
    return new CalcTcpClient(TcpChannel.connect(address, options), TcpCallOptions.DEFAULT);
  }

  /** A client on an existing connection. */
  public static CalcTcpClient on(TcpChannel channel) {
    return new CalcTcpClient(channel, TcpCallOptions.DEFAULT);
  }

  public TcpChannel channel() {
    return channel;
  }

  public TcpCallOptions options() {
    return options;
  }

  public CalcTcpClient withOptions(TcpCallOptions o) {
    return new CalcTcpClient(channel, o);
  }

  public CalcTcpClient withDeadline(Deadline d) {
    return withOptions(options.withDeadline(d));
  }

  public CalcTcpClient withDeadlineAfter(long duration, TimeUnit unit) {
    return withOptions(options.withDeadlineAfter(duration, unit));
  }

  public CalcTcpClient withMetadata(Metadata md) {
    return withOptions(options.withMetadata(md));
  }

  public CalcTcpClient withoutCompression() {
    return withOptions(options.withCompression(false));
  }

  /** Calculate: lhs operator rhs with checked int64 arithmetic. */
  public TcpCallFuture<CalculateResponse> calculate(CalculateRequest request) {
    return channel.unaryCall(CalculatorServiceGrpc.getCalculateMethod(), request, options);
  }

  /** Evaluate: an arithmetic expression, exactly. */
  public TcpCallFuture<EvaluateResponse> evaluate(EvaluateRequest request) {
    return channel.unaryCall(CalculatorServiceGrpc.getEvaluateMethod(), request, options);
  }

  /**
   * CalculateStream: send requests with the returned stream (then half-close it); responses,
   * then the end of the call, go to {@code responses} on the connection's reader thread.
   */
  public TcpClientStream<CalculateStreamRequest, CalculateStreamResponse> calculateStream(
      StreamObserver<CalculateStreamResponse> responses) {
    return channel.streamCall(CalculatorServiceGrpc.getCalculateStreamMethod(), responses, options);
  }

  /** Closes the connection. */
  @Override
  public void close() {
    channel.close();
  }
}
