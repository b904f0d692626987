// @calcrpc/calc-client/browser: what runs in a browser, with standard Web
// APIs only: the CalculatorService types and the WebSocket transport
// (calc's raw TCP protocol over calcd's /ws), CalculateStream included. For
// unary calls a page may also use connect-web's Connect transport against
// the HTTP port.

export * from "./gen/calculator/v1/calculator_pb.js";
export { StatusSchema, type Status } from "./gen/google/rpc/status_pb.js";
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
export {
  CalcWebSocketConnection,
  WebSocketStream,
  SUBPROTOCOL,
  type WebSocketCallOptions,
  type WebSocketCallStatus,
  type WebSocketConnectionOptions,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./ws/connection.js";
export { createWebSocketTransport, type WebSocketTransport, type WebSocketTransportOptions } from "./ws/transport.js";
export { createCalcWebSocketClient } from "./ws/client.js";
