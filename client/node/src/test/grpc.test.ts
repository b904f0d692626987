// The gRPC transport's own pieces that need no server (the live tests in
// live/tls.test.ts run it against calcd).

import { test } from "node:test";
import assert from "node:assert/strict";
import { grpcTimeoutMs } from "../grpc.js";

test("grpc-timeout values", () => {
  assert.equal(grpcTimeoutMs("200m"), 200);
  assert.equal(grpcTimeoutMs("2S"), 2000);
  assert.equal(grpcTimeoutMs("1H"), 3_600_000);
  assert.equal(grpcTimeoutMs("1500u"), 1.5);
  for (const bad of [null, "", "200", "m", "123456789m", "2s"]) {
    assert.equal(grpcTimeoutMs(bad), undefined, String(bad));
  }
});
