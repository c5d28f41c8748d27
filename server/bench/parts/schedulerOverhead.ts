/**
 * The scheduler's own cost per tick, in this process: the real Scheduler over a real CtmBatch, with no
 * gRPC, no worker thread and no message port, so that what it adds to the graph runs (copies, halting
 * checks, bookkeeping) is measured apart from the machine's contention for the server's threads. The
 * server's figure (its worker's step time, ctm_worker_step_seconds_total) includes both.
 */

import { Scheduler } from "../../src/engine/scheduler.ts";
import type { AdmitMessage } from "../../src/engine/workerProtocol.ts";
import type { ModelDefinition } from "../../src/model/modelFolder.ts";
import { CtmBatch } from "../../src/runtime/ctmBatch.ts";
import type { SessionSettings } from "../../src/runtime/executionProvider.ts";

export interface SchedulerOverhead {
  rows: number;
  waves: number;
  tickRuns: number;
  tickRunMs: number;
  /** Per tick run: the step's wall time less its graph runs. */
  outsidePerTickMs: number;
  shareOfTickRuns: number;
}

/** `waves` rounds of `rows` requests admitted together, each running `ticks` ticks. */
export async function measureSchedulerOverhead(
  model: ModelDefinition,
  settings: SessionSettings,
  input: Float32Array,
  plan: { rows: number; waves: number; ticks: number },
): Promise<SchedulerOverhead> {
  const batch = await CtmBatch.open(model, settings);
  await batch.warmUp(plan.rows);
  let [stepMs, tickMs, encodeMs, tickRuns, finished] = [0, 0, 0, 0, 0];
  let waveDone: () => void = () => {};
  const scheduler = new Scheduler(batch, model.manifest.output, (step) => {
    for (const run of step.runs) {
      stepMs += run.stepMs;
      tickMs += run.tickMs;
      encodeMs += run.encodeMs;
      if (run.batchSize > 0) tickRuns++;
    }
    finished += step.finished.length;
    if (finished % plan.rows === 0 && step.finished.length > 0) waveDone();
  });
  const running = scheduler.run();
  let id = 0;
  try {
    for (let wave = 0; wave < plan.waves; wave++) {
      await new Promise<void>((resolve) => {
        waveDone = resolve;
        for (let r = 0; r < plan.rows; r++) scheduler.admit(admission(++id, input, plan.ticks));
      });
    }
  } finally {
    scheduler.stop();
    await running;
    await batch.close();
  }
  const outside = stepMs - tickMs - encodeMs;
  return {
    rows: plan.rows,
    waves: plan.waves,
    tickRuns,
    tickRunMs: tickMs / tickRuns,
    outsidePerTickMs: outside / tickRuns,
    shareOfTickRuns: outside / tickMs,
  };
}

function admission(id: number, input: Float32Array, ticks: number): AdmitMessage {
  return {
    type: "admit",
    id,
    input: input.slice(),
    policy: { signal: "certainty", threshold: 1, minTicks: ticks, maxTicks: ticks, patience: 0, deadlineMs: 0 },
    deadlineAt: Number.POSITIVE_INFINITY,
    streamTicks: false,
    readAhead: 0,
    attention: false,
  };
}
