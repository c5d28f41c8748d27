/**
 * What the two graphs cost by batch size, and what memory each active row holds, in this process with
 * the sessions the server opens (openSessions: same provider, threads and options), outside any load.
 *
 * The tick graph's rows are one encoded input repeated: a tick's work does not depend on the values,
 * so a batch of 64 needs one encoder run instead of 64, which at ImageNet size is the difference
 * between seconds and minutes. Its feeds and fetches are preallocated, as CtmBatch holds them.
 * Batches run in increasing size, so the resident memory after each is the high-water mark of that
 * size (onnxruntime's arena keeps what it has needed). The feed and fetch buffers are allocated once,
 * for the largest batch, before any run, so that slope is what onnxruntime needs per row; the
 * buffers' own bytes per row are known exactly and added by the caller.
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import * as ort from "onnxruntime-node";
import { type LinearFit, linearFit, median } from "../../../tools/harness/statistics.ts";
import type { ModelDefinition } from "../../src/model/modelFolder.ts";
import { openSessions, type SessionSettings } from "../../src/runtime/executionProvider.ts";
import { type GraphCosts, type GraphRun, graphRun } from "./graphCostModel.ts";

/**
 * The graph costs (median runs) with the memory each size left resident. Encoder runs come after the
 * tick runs; residentMiB after each size (its arena grows with the rows).
 */
export interface ScaleGraphs extends GraphCosts<GraphRun & { residentMiB: number }> {
  openMs: number;
  /** Resident MiB against tick rows, the batch's buffers allocated beforehand: slope = onnxruntime's MiB per row. */
  memory: LinearFit;
}

const product = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);
export const residentMiB = (pid: number | "self" = "self") =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]) / 1024;

/** One row repeated `rows` times. */
function tile(row: Float32Array, rows: number): Float32Array {
  const out = new Float32Array(row.length * rows);
  for (let i = 0; i < rows; i++) out.set(row, i * row.length);
  return out;
}

export async function measureGraphs(
  model: ModelDefinition,
  settings: SessionSettings,
  input: Float32Array,
  plan: { tickRows: number[]; encoderRows: number[]; tickRepeats: number; encoderRepeats: number },
): Promise<ScaleGraphs> {
  const { manifest } = model;
  const opened = performance.now();
  const { encoder, tick } = await openSessions(model.encoderPath, model.tickPath, settings);
  const openMs = performance.now() - opened;
  const inputName = manifest.graphs.encoder.inputs[0]?.name as string;
  const encode = (rows: number) =>
    encoder.run({ [inputName]: new ort.Tensor("float32", tile(input, rows), [rows, ...manifest.input.shape]) });

  const timed = async (repeats: number, once: () => Promise<unknown>) => {
    await once(); // the first run of a size grows the arena: not what a steady server pays
    const ms: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const started = performance.now();
      await once();
      ms.push(performance.now() - started);
    }
    return median(ms);
  };

  const one = await encode(1);
  const rowOf = (name: string) => (one[name] as ort.Tensor).data as Float32Array;
  // Buffers for the largest batch, allocated once, as CtmBatch holds them: each size runs over their
  // first rows, so resident memory grows only by what onnxruntime needs per row.
  const most = Math.max(...plan.tickRows);
  const feedData = new Map<string, { data: Float32Array; shape: readonly number[] }>();
  const fetchData = new Map<string, { data: Float32Array; shape: readonly number[] }>();
  for (const c of manifest.context) feedData.set(c.name, { data: tile(rowOf(c.name), most), shape: c.shape });
  for (const s of manifest.state) {
    feedData.set(s.input, { data: tile(rowOf(s.init), most), shape: s.shape });
    fetchData.set(s.output, { data: new Float32Array(most * product(s.shape)), shape: s.shape });
  }
  for (const name of Object.values(manifest.outputs)) {
    const shape = (manifest.graphs.tick.outputs.find((o) => o.name === name)?.shape.slice(1) ?? []) as number[];
    fetchData.set(name, { data: new Float32Array(most * product(shape)), shape });
  }
  const tensors = (buffers: typeof feedData, rows: number) =>
    Object.fromEntries(
      [...buffers].map(([name, { data, shape }]) => [
        name,
        new ort.Tensor("float32", data.subarray(0, rows * product(shape)), [rows, ...shape]),
      ]),
    );
  const tickRuns: ScaleGraphs["tick"] = [];
  for (const rows of [...plan.tickRows].sort((a, b) => a - b)) {
    const feeds = tensors(feedData, rows);
    const fetches = tensors(fetchData, rows);
    const ms = await timed(plan.tickRepeats, () => tick.run(feeds, fetches));
    tickRuns.push({ ...graphRun(rows, ms, plan.tickRepeats), residentMiB: residentMiB() });
  }
  const encoderRuns: ScaleGraphs["encoder"] = [];
  for (const rows of [...plan.encoderRows].sort((a, b) => a - b)) {
    const ms = await timed(plan.encoderRepeats, () => encode(rows));
    encoderRuns.push({ ...graphRun(rows, ms, plan.encoderRepeats), residentMiB: residentMiB() });
  }
  await Promise.all([encoder.release(), tick.release()]);
  return {
    openMs,
    encoder: encoderRuns,
    tick: tickRuns,
    memory: linearFit(tickRuns.map((t) => [t.rows, t.residentMiB])),
  };
}
