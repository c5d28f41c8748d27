/**
 * --max-connection-age-ms: the server asks a connection to go away once it is that old, so that a
 * long-lived client re-resolves and reaches replicas added since it connected (docs/deploy.md, "Load
 * balancing"). Checked on the client's channel: it leaves READY with the limit and stays READY without.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectivityState } from "@grpc/grpc-js";
import {
  type GoldenCase,
  readModelJson,
  startTestServer,
  type TestServer,
  tensorRequest,
} from "../../../tools/harness/testServer.ts";

/** Resolves true when the channel leaves its current state within `ms`, false when it does not. */
function leavesStateWithin(server: TestServer, ms: number): Promise<boolean> {
  const channel = server.client.raw.getChannel();
  const state = channel.getConnectivityState(false);
  assert.equal(state, connectivityState.READY, "the channel is connected before the wait");
  return new Promise((resolve) => channel.watchConnectivityState(state, Date.now() + ms, (error) => resolve(!error)));
}

describe("--max-connection-age-ms", () => {
  const golden = readModelJson<{ cases: GoldenCase[] }>("golden.json").cases[0] as GoldenCase;
  const request = tensorRequest(golden);
  let aged: TestServer;
  let ageless: TestServer;

  before(async () => {
    [aged, ageless] = await Promise.all([startTestServer({ maxConnectionAgeMs: 300 }), startTestServer()]);
  });
  after(async () => {
    await Promise.all([aged?.close(), ageless?.close()]);
  });

  it("closes a connection once it is older than the limit; the client reconnects and calls succeed", async () => {
    const first = await aged.client.classify(request);
    assert.equal(first.top_k[0]?.index, golden.label);
    // 300 ms + at most 10% jitter; the 3 s bound only keeps a broken server from hanging the test.
    assert.equal(await leavesStateWithin(aged, 3000), true, "the server closed the connection");
    const second = await aged.client.classify(request);
    assert.equal(second.top_k[0]?.index, golden.label);
  });

  it("loses no call while connections are recycled under load: calls in flight finish on the old one", async () => {
    // Four callers for about a second against connections that live 100 ms: GOAWAYs keep arriving
    // while calls are in flight, and each must still succeed.
    const churning = await startTestServer({ maxConnectionAgeMs: 100 });
    try {
      let reconnects = 0;
      let running = true;
      const channel = churning.client.raw.getChannel();
      const watching = (async () => {
        while (running) {
          const state = channel.getConnectivityState(true);
          const changed = await new Promise<boolean>((resolve) =>
            channel.watchConnectivityState(state, Date.now() + 200, (error) => resolve(!error)),
          );
          if (changed && state === connectivityState.READY) reconnects++;
        }
      })();
      const until = Date.now() + 1000;
      let answered: number[];
      try {
        answered = await Promise.all(
          Array.from({ length: 4 }, async () => {
            let n = 0;
            while (Date.now() < until) {
              const response = await churning.client.classify(request, { deadline: Date.now() + 10_000 });
              assert.equal(response.top_k[0]?.index, golden.label);
              n++;
            }
            return n;
          }),
        );
      } finally {
        running = false;
        await watching;
      }
      assert.ok(reconnects >= 3, `the connection was recycled only ${reconnects} time(s)`);
      assert.ok(
        answered.every((n) => n > 0),
        `every caller was answered: ${answered}`,
      );
    } finally {
      await churning.close();
    }
  });

  it("keeps connections open without it (the default, 0)", async () => {
    await ageless.client.classify(request);
    assert.equal(await leavesStateWithin(ageless, 1000), false, "the connection stayed open");
  });
});
