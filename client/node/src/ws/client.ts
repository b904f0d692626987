import { createClient, type Client } from "@connectrpc/connect";
import { CalculatorService } from "../gen/calculator/v1/calculator_pb.js";
import { createWebSocketTransport, type WebSocketTransport, type WebSocketTransportOptions } from "./transport.js";

/**
 * A typed CalculatorService client over a WebSocket, with the transport so
 * the caller can close it: `const { client, transport } = createCalcWebSocketClient({ url })`.
 */
export function createCalcWebSocketClient(options: WebSocketTransportOptions): {
  client: Client<typeof CalculatorService>;
  transport: WebSocketTransport;
} {
  const transport = createWebSocketTransport(options);
  return { client: createClient(CalculatorService, transport), transport };
}
