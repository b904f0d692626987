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
export { createTcpTransport, methodPath, waitForReadyKey, type TcpTransport, type TcpTransportOptions } from "./tcp/transport.js";
export {
  CalcTcpChannel,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_MIN_CONNECT_TIMEOUT_MS,
  parseEndpoints,
  type ChannelCallOptions,
  type ConnectivityState,
  type EndpointState,
  type TcpChannelOptions,
} from "./tcp/channel.js";
export { backoffDelay, CONNECTION_BACKOFF, RETRY_BACKOFF, type BackoffOptions } from "./tcp/backoff.js";
export { formatEndpoint, socketDialer, type DialOptions, type Dialer, type Endpoint } from "./tcp/dial.js";
export {
  ALPN_CALC,
  isLoopback,
  tlsEnabled,
  type PemSource,
  type SecurityOptions,
  type TlsOptions,
} from "./security.js";
export { createCalcTcpClient } from "./tcp/client.js";
export * as wire from "./tcp/wire.js";
export {
  CalcWebSocketConnection,
  WebSocketStream,
  SUBPROTOCOL,
  type WebSocketCallOptions,
  type WebSocketConnectionOptions,
  type WebSocketConstructor,
} from "./ws/connection.js";
export { createWebSocketTransport, type WebSocketTransport, type WebSocketTransportOptions } from "./ws/transport.js";
export { createCalcWebSocketClient } from "./ws/client.js";
