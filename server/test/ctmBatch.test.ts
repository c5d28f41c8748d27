/**
 * The runtime's batch on its own (no server): the start-up warm-up leaves nothing behind.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadModelFolder } from "../src/model/modelFolder.ts";
import { CtmBatch } from "../src/runtime/ctmBatch.ts";
import { type GoldenCase, modelDir, readModelJson } from "./support/testServer.ts";

describe("CtmBatch warm-up", () => {
  it("leaves the batch empty, and the next request's every tick matches the golden fixture", async () => {
    const batch = await CtmBatch.open(loadModelFolder(modelDir()), { provider: "cpu", threads: 1 });
    try {
      await batch.warmUp(16);
      const golden = readModelJson<{ cases: GoldenCase[] }>("golden.json").cases[0] as GoldenCase;
      await batch.join([7], Float32Array.from(golden.input));
      for (let t = 0; t < golden.logits.length; t++) {
        const run = await batch.tick();
        assert.deepEqual(run.ids, [7], "only the request's row runs: the warm-up rows are gone");
        const expected = golden.logits[t] as number[];
        expected.forEach((value, i) => {
          assert.ok(Math.abs((run.logits[i] as number) - value) < 1e-4, `tick ${t + 1} logit ${i}`);
        });
        assert.ok(Math.abs((run.certainty[0] as number) - (golden.certainty[t] as number)) < 1e-4);
      }
    } finally {
      await batch.close();
    }
  });
});
