// Minimal gRPC call: node examples/grpc.mjs [HOST:PORT] (calcd's gRPC address)
import { createCalcGrpcClient, Operator } from "@calcrpc/calc-client";

const client = createCalcGrpcClient({ address: process.argv[2] ?? "127.0.0.1:50051" });
const { result } = await client.calculate({ operator: Operator.ADD, lhs: 2n, rhs: 3n });
console.log(`gRPC: 2 + 3 = ${result}`);
