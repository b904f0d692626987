// The low-level raw TCP API (bytes in, bytes out): node examples/tcp-connection.mjs [HOST:PORT]
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { CalcTcpConnection, CalculateRequestSchema, CalculateResponseSchema, Operator } from "@calcrpc/calc-client";

const conn = await CalcTcpConnection.connect(process.argv[2] ?? "127.0.0.1:4000");
console.log(`settings: ${JSON.stringify(conn.settings)}; ping ${(await conn.ping()).toFixed(2)} ms`);
const req = toBinary(CalculateRequestSchema, create(CalculateRequestSchema, { operator: Operator.POWER, lhs: 2n, rhs: 10n }));
const res = await conn.unary("/calculator.v1.CalculatorService/Calculate", req, { metadata: { authorization: "Bearer t0ken" } });
console.log(`2 ^ 10 = ${fromBinary(CalculateResponseSchema, res).result}`);
await conn.close();
