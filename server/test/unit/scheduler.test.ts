/**
 * The tick scheduler on its own (no server), over a real CtmBatch and the shipped model: a graph run
 * that fails fails the requests in the batch, and only them. onnxruntime-node starts every run in a
 * setImmediate, so a request admitted while a run is in flight lands in the middle of it; it was never
 * part of that run and must be served normally afterwards.
 *
 * The failure is injected around the real batch (a graph run cannot be made to fail on demand): the
 * real tick runs, a request is admitted meanwhile, and the run is then reported failed.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type GoldenCase, modelDir, readModelJson } from "../../../tools/harness/testServer.ts";
import type { HaltPolicy } from "../../src/engine/haltPolicy.ts";
import { Scheduler, type TickBatch } from "../../src/engine/scheduler.ts";
import type { AdmitMessage, Finished, StepMessage } from "../../src/engine/workerProtocol.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import { CtmBatch } from "../../src/runtime/ctmBatch.ts";

const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
const everyTick: HaltPolicy = {
  signal: "certainty",
  threshold: 1,
  minTicks: golden.ticks,
  maxTicks: golden.ticks,
  patience: 0,
  deadlineMs: 0,
};
const admission = (id: number, c: GoldenCase): AdmitMessage => ({
  type: "admit",
  id,
  input: Float32Array.from(c.input),
  policy: everyTick,
  deadlineAt: Number.POSITIVE_INFINITY,
  streamTicks: true,
  attention: false,
  readAhead: 0,
});

describe("a graph run that fails", () => {
  it("fails the requests in the batch, not one admitted while the run was in flight", async () => {
    const model = loadModelFolder(modelDir());
    const real = await CtmBatch.open(model, { provider: "cpu", threads: 1 });
    const [first, second] = golden.cases as [GoldenCase, GoldenCase];
    const steps: StepMessage[] = [];
    let fail = true;
    let scheduler: Scheduler | undefined;
    const batch: TickBatch = {
      join: (ids, inputs) => real.join(ids, inputs),
      leave: (ids) => real.leave(ids),
      park: (ids) => real.park(ids),
      resume: (ids) => real.resume(ids),
      tick: async () => {
        if (!fail) return real.tick();
        fail = false;
        const run = real.tick();
        scheduler?.admit(admission(2, second));
        await run;
        throw new Error("the tick graph run failed (injected)");
      },
    };
    let done: (() => void) | undefined;
    const finishedAll = new Promise<void>((resolve) => {
      done = resolve;
    });
    const finished: Finished[] = [];
    scheduler = new Scheduler(batch, model.manifest.output, (step) => {
      steps.push(step);
      finished.push(...step.finished);
      if (finished.length === 2) done?.();
    });
    const running = scheduler.run();
    try {
      scheduler.admit(admission(1, first));
      await finishedAll;
      assert.deepEqual(
        finished.map((f) => [f.id, f.outcome]),
        [
          [1, "failed"],
          [2, "halted"],
        ],
      );
      // The late arrival ran every tick, from its own first one, exactly as the golden fixture says.
      const ticks = steps.flatMap((s) =>
        s.ticks ? s.ticks.ids.flatMap((id, row) => (id === 2 ? [{ tick: s.ticks?.ticks[row], row, s }] : [])) : [],
      );
      assert.deepEqual(
        ticks.map((t) => t.tick),
        Array.from({ length: golden.ticks }, (_, i) => i + 1),
      );
      const width = model.manifest.output.shape[0] as number;
      ticks.forEach(({ row, s }, t) => {
        const logits = s.ticks?.logits.subarray(row * width, (row + 1) * width) as Float32Array;
        (second.logits[t] as number[]).forEach((v, j) => {
          assert.ok(Math.abs((logits[j] as number) - v) < 1e-4, `tick ${t + 1} logit ${j}`);
        });
      });
    } finally {
      scheduler.stop();
      await running;
      await real.close();
    }
  });
});
