/**
 * The benchmark's control (server/bench/children/thinServer.ts) must do the same work as the server it is
 * compared with, or benchmarks 1 and 3 compare nothing: over real gRPC, its answer for every golden
 * input is the export's last-tick prediction, and its health service answers.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createHealthClient, type StartedServer, startServerProcess } from "../../../tools/harness/index.ts";
import {
  CtmTestClient,
  type GoldenCase,
  REPO,
  readModelJson,
  tensorRequest,
} from "../../../tools/harness/testServer.ts";

describe("benchmark control: the thinnest server over the same graphs", () => {
  const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
  let thin: StartedServer;
  let client: CtmTestClient;

  before(async () => {
    thin = await startServerProcess(REPO, ["--threads", "1"], "server/bench/children/thinServer.ts");
    client = new CtmTestClient(`127.0.0.1:${thin.port}`);
  });
  after(async () => {
    client?.close();
    await thin?.stop();
  });

  it("answers every golden input with the export's last-tick prediction", async () => {
    assert.ok(golden.cases.length > 0);
    for (const [i, case_] of golden.cases.entries()) {
      const response = await client.classify(tensorRequest(case_, { max_ticks: golden.ticks }));
      const last = case_.probabilities[golden.ticks - 1] as number[];
      const expected = last.indexOf(Math.max(...last));
      const [top] = response.top_k;
      assert.equal(response.ticks_used, golden.ticks, `case ${i}`);
      assert.equal(top?.index, expected, `case ${i}: top class`);
      assert.ok(Math.abs((top?.probability ?? Number.NaN) - (last[expected] as number)) <= 1e-4, `case ${i}`);
    }
  });

  it("answers grpc.health.v1 Check with SERVING", async () => {
    const health = createHealthClient(`127.0.0.1:${thin.port}`);
    try {
      assert.equal((await health.Check({ service: "" })).status, "SERVING");
    } finally {
      health.close();
    }
  });
});
