import { createClient, type Client } from "@connectrpc/connect";
import { CalculatorService } from "../gen/calculator/v1/calculator_pb.js";
import { createTcpTransport, type TcpTransport, type TcpTransportOptions } from "./transport.js";

/**
 * A typed CalculatorService client over raw TCP, with the transport so the
 * caller can close it: `const { client, transport } = createCalcTcpClient({ address })`.
 */
export function createCalcTcpClient(options: TcpTransportOptions): { client: Client<typeof CalculatorService>; transport: TcpTransport } {
  const transport = createTcpTransport(options);
  return { client: createClient(CalculatorService, transport), transport };
}
