/**
 * What each graph run costs by batch size, measured out of load as the server's worker runs them
 * (CtmBatch), and the cost per answer it predicts: one encoder row, plus one tick row for every tick
 * the answer ran, each at the batch size the server actually formed (bench.ts, graphCost.ts).
 */
import type { ModelDefinition } from "../../src/model/modelFolder.ts";
import { CtmBatch } from "../../src/runtime/ctmBatch.ts";
import type { SessionSettings } from "../../src/runtime/executionProvider.ts";

export const BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64];

export interface GraphCosts {
  rows: number[];
  /** Median milliseconds of one run at each batch size of `rows`. */
  encoderMs: number[];
  tickMs: number[];
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

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
    rows,
    encoderMs: samples.map((s) => median(s.encoder)),
    tickMs: samples.map((s) => median(s.tick)),
    samples,
  };
}

/** Milliseconds per row of one run at `rows` rows, interpolated linearly in log2(rows). */
export function perRow(costs: GraphCosts, graph: "encoderMs" | "tickMs", rows: number): number {
  const perRowAt = (i: number) => (costs[graph][i] as number) / (costs.rows[i] as number);
  const x = Math.log2(Math.min(Math.max(rows, costs.rows[0] as number), costs.rows.at(-1) as number));
  for (let i = 0; i + 1 < costs.rows.length; i++) {
    const [a, b] = [Math.log2(costs.rows[i] as number), Math.log2(costs.rows[i + 1] as number)];
    if (x <= b) return perRowAt(i) + ((x - a) / (b - a)) * (perRowAt(i + 1) - perRowAt(i));
  }
  return perRowAt(costs.rows.length - 1);
}

/** Graph milliseconds one answer costs: an encoder row and `meanTicks` tick rows, at those batch sizes. */
export function predictedMsPerAnswer(
  costs: GraphCosts,
  seen: { meanTicks: number; encoderRowsPerRun: number; tickRowsPerRun: number },
): number {
  return (
    perRow(costs, "encoderMs", seen.encoderRowsPerRun) + seen.meanTicks * perRow(costs, "tickMs", seen.tickRowsPerRun)
  );
}
