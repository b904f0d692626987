// Minimal raw TCP calls: node examples/tcp.mjs [HOST:PORT] (calcd's raw TCP address)
import { Code, ConnectError, createCalcTcpClient, errorDetails, Operator } from "@calcrpc/calc-client";

const { client, transport } = createCalcTcpClient({ address: process.argv[2] ?? "127.0.0.1:4000" });

// Unary, with a deadline.
const { result } = await client.calculate({ operator: Operator.ADD, lhs: 2n, rhs: 3n }, { timeoutMs: 1000 });
console.log(`raw TCP: 2 + 3 = ${result}`);

// Errors are ConnectErrors with the gRPC code and the google.rpc details, as over gRPC.
try {
  await client.calculate({ operator: Operator.DIVIDE, lhs: 1n, rhs: 0n });
} catch (err) {
  if (!(err instanceof ConnectError) || err.code !== Code.InvalidArgument) throw err;
  const { errorInfo, badRequest } = errorDetails(err);
  console.log(`raw TCP: ${err.rawMessage} (reason ${errorInfo?.reason}, field ${badRequest?.fieldViolations[0]?.field})`);
}

// Streaming: send requests while reading answers.
async function* requests() {
  for (let i = 1n; i <= 3n; i++) yield { id: i, calculation: { operator: Operator.MULTIPLY, lhs: i, rhs: 7n } };
}
for await (const r of client.calculateStream(requests())) {
  console.log(`raw TCP: stream id ${r.id}: ${r.outcome.case} ${r.outcome.value}`);
}

await transport.close();
