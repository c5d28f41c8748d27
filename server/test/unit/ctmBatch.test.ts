/**
 * The runtime's batch on its own (no server): the start-up warm-up leaves nothing behind; a large
 * encoder runs in parts, and the scheduler ticks the active rows between them.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type GoldenCase, modelDir, readModelJson } from "../../../tools/harness/testServer.ts";
import { Scheduler } from "../../src/engine/scheduler.ts";
import type { StepRun } from "../../src/engine/workerProtocol.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import { CtmBatch } from "../../src/runtime/ctmBatch.ts";

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

describe("CtmBatch encoder runs in parts of encoderRows", () => {
  const golden = () => readModelJson<{ cases: GoldenCase[] }>("golden.json").cases;

  it("warm-up and a join larger than encoderRows give every row its own golden ticks", async () => {
    const batch = await CtmBatch.open(loadModelFolder(modelDir()), { provider: "cpu", threads: 1 }, { encoderRows: 2 });
    try {
      assert.equal(batch.encoderRows, 2);
      await batch.warmUp(5);
      const cases = [...golden(), ...golden()].slice(0, 5); // more rows than one encoder run takes
      await batch.join(
        cases.map((_, i) => 10 + i),
        Float32Array.from(cases.flatMap((c) => c.input)),
      );
      for (let t = 0; t < (cases[0] as GoldenCase).logits.length; t++) {
        const run = await batch.tick();
        assert.deepEqual(run.ids, [10, 11, 12, 13, 14]);
        const width = run.logits.length / run.ids.length;
        cases.forEach((c, row) => {
          (c.logits[t] as number[]).forEach((value, i) => {
            assert.ok(Math.abs((run.logits[row * width + i] as number) - value) < 1e-4, `row ${row} tick ${t + 1}`);
          });
        });
      }
    } finally {
      await batch.close();
    }
  });

  it("the scheduler joins at most encoderRows per tick boundary, ticking the rows already in between", async () => {
    const model = loadModelFolder(modelDir());
    const batch = await CtmBatch.open(model, { provider: "cpu", threads: 1 }, { encoderRows: 2 });
    const runs: StepRun[] = [];
    const finished = new Set<number>();
    const input = Float32Array.from((golden()[0] as GoldenCase).input);
    const ticks = model.manifest.ticks.trained;
    let scheduler: Scheduler | undefined;
    scheduler = new Scheduler(batch, model.manifest.output, (step) => {
      runs.push(...step.runs);
      for (const f of step.finished) finished.add(f.id);
      if (finished.size === 5) scheduler?.stop();
    });
    try {
      for (let id = 1; id <= 5; id++) {
        scheduler.admit({
          type: "admit",
          id,
          input: input.slice(),
          policy: { signal: "certainty", threshold: 1, minTicks: ticks, maxTicks: ticks, patience: 0, deadlineMs: 0 },
          deadlineAt: Number.POSITIVE_INFINITY,
          streamTicks: false,
          readAhead: 0,
          attention: false,
        });
      }
      await scheduler.run();
      assert.equal(finished.size, 5);
      const joins = runs.filter((r) => r.joined > 0);
      assert.deepEqual(
        joins.map((r) => r.joined),
        [2, 2, 1],
        "five requests admitted at once join two, two and one",
      );
      assert.deepEqual(
        joins.map((r) => r.batchSize),
        [2, 4, 5],
        "each join's boundary ticks every row that has joined so far",
      );
    } finally {
      await batch.close();
    }
  });
});
