// @calcrpc/calc-client: the calc CalculatorService over gRPC and over calc's
// raw TCP protocol, with one typed client API for both (connect-es clients).

export * from "./gen/calculator/v1/calculator_pb.js";
export {
  StatusSchema,
  type Status,
} from "./gen/google/rpc/status_pb.js";
export {
  BadRequestSchema,
  BadRequest_FieldViolationSchema,
  ErrorInfoSchema,
  type BadRequest,
  type BadRequest_FieldViolation,
  type ErrorInfo,
} from "./gen/google/rpc/error_details_pb.js";
export { createClient, type Client, type Transport } from "@connectrpc/connect";
export { CalcError, Code, ConnectError, CODE_NAMES, codeName, errorDetails, type CalcErrorDetails, type StatusSource } from "./errors.js";
export { createCalcGrpcClient, createCalcGrpcTransport, snappyCompression, type CalcGrpcTransportOptions } from "./grpc.js";
export {
  CalcTcpConnection,
  TcpStream,
  parseAddress,
  type CallStatus,
  type GoawayInfo,
  type MetadataInit,
  type TcpCallOptions,
  type TcpConnectionOptions,
} from "./tcp/connection.js";
export { createTcpTransport, methodPath, type TcpTransport, type TcpTransportOptions } from "./tcp/transport.js";
export { createCalcTcpClient } from "./tcp/client.js";
export * as wire from "./wire/index.js";
