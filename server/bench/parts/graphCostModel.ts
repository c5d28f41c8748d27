/**
 * What each graph run costs by batch size, measured out of load as the server's worker runs them
 * (CtmBatch), and the cost per answer it predicts: one encoder row, plus one tick row for every tick
 * the answer ran, each at the batch size the server actually formed (bench.ts, graphCost.ts). The one
 * shape of graph costs: bench:scale's measurement (scaleGraphs.ts) adds memory to the same runs.
 */

import { median } from "../../../tools/harness/statistics.ts";
import type { ModelDefinition } from "../../src/model/modelFolder.ts";
import { CtmBatch } from "../../src/runtime/ctmBatch.ts";
import type { SessionSettings } from "../../src/runtime/executionProvider.ts";

export const BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64];

/** One graph's runs at one batch size. */
export interface GraphRun {
  rows: number;
  /** Milliseconds of one run (the median of `runs`, unless the measurement says otherwise), and per row. */
  ms: number;
  perRowMs: number;
  runs: number;
}

/** What a run of each graph costs, by batch size in increasing rows. */
export interface GraphCosts<Run extends GraphRun = GraphRun> {
  encoder: Run[];
  tick: Run[];
}

export function graphRun(rows: number, ms: number, runs: number): GraphRun {
  return { rows, ms, perRowMs: ms / rows, runs };
}

/** Medians of `repeats` runs of each graph at each batch size, on a batch of its own. */
export async function measureGraphCosts(
  model: ModelDefinition,
  settings: Omit<SessionSettings, "provider">,
  repeats: number,
  rows: number[] = BATCH_SIZES,
): Promise<GraphCosts & { samples: { encoder: number[]; tick: number[] }[] }> {
  const rowSize = model.manifest.input.shape.reduce((a, b) => a * b, 1);
  const batch = await CtmBatch.open(model, { provider: "cpu", ...settings });
  await batch.warmUp(Math.max(...rows));
  let next = 1;
  const samples = rows.map(() => ({ encoder: [] as number[], tick: [] as number[] }));
  for (const [b, n] of rows.entries()) {
    const into = samples[b] as { encoder: number[]; tick: number[] };
    for (let r = 0; r < repeats; r++) {
      const ids = Array.from({ length: n }, () => next++);
      into.encoder.push(await batch.join(ids, new Float32Array(n * rowSize).fill(0.1)));
      into.tick.push((await batch.tick()).runMs);
      batch.leave(ids);
    }
  }
  await batch.close();
  return {
    encoder: rows.map((n, b) => graphRun(n, median(samples[b]?.encoder ?? []), repeats)),
    tick: rows.map((n, b) => graphRun(n, median(samples[b]?.tick ?? []), repeats)),
    samples,
  };
}

/** Milliseconds per row of one run at `rows` rows, interpolated linearly in log2(rows). */
export function perRow(costs: GraphCosts, graph: "encoder" | "tick", rows: number): number {
  const runs = costs[graph];
  const perRowAt = (i: number) => (runs[i] as GraphRun).perRowMs;
  const rowsAt = (i: number) => (runs[i] as GraphRun).rows;
  const x = Math.log2(Math.min(Math.max(rows, rowsAt(0)), rowsAt(runs.length - 1)));
  for (let i = 0; i + 1 < runs.length; i++) {
    const [a, b] = [Math.log2(rowsAt(i)), Math.log2(rowsAt(i + 1))];
    if (x <= b) return perRowAt(i) + ((x - a) / (b - a)) * (perRowAt(i + 1) - perRowAt(i));
  }
  return perRowAt(runs.length - 1);
}

/** Graph milliseconds one answer costs: an encoder row and `meanTicks` tick rows, at those batch sizes. */
export function predictedMsPerAnswer(
  costs: GraphCosts,
  seen: { meanTicks: number; encoderRowsPerRun: number; tickRowsPerRun: number },
): number {
  return perRow(costs, "encoder", seen.encoderRowsPerRun) + seen.meanTicks * perRow(costs, "tick", seen.tickRowsPerRun);
}
