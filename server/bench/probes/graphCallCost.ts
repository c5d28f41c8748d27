/**
 * What one graph call costs through onnxruntime-node, batch 1: the tick graph run 3000 times on its
 * own state (default fetches, then preallocated ones as CtmBatch does) and the encoder every 15th
 * call. Beside graph_call_cost.py, which does the same in Python onnxruntime, it tells the binding's
 * per-call cost from the graphs' (docs/benchmarks.md, "A lone request").
 *
 *   node --import tsx server/bench/probes/graphCallCost.ts [threads]
 */
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import { median } from "../../../tools/harness/statistics.ts";
import { discoverModelFolders, loadModelFolder } from "../../src/model/modelFolder.ts";
import { openSessions } from "../../src/runtime/executionProvider.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const model = loadModelFolder(discoverModelFolders(join(REPO, "models"))[0] as string);
const threads = Number(process.argv[2] ?? 1);
const { encoder, tick } = await openSessions(model.encoderPath, model.tickPath, { provider: "cpu", threads });
const m = model.manifest;
const inputName = m.graphs.encoder.inputs[0]?.name as string;
const size = m.input.shape.reduce((a, b) => a * b, 1);
const x = new ort.Tensor("float32", new Float32Array(size).fill(0.1), [1, ...m.input.shape]);
const encoded = await encoder.run({ [inputName]: x });
const feeds: Record<string, ort.Tensor> = {};
for (const c of m.context) feeds[c.name] = encoded[c.name] as ort.Tensor;
for (const s of m.state) feeds[s.input] = encoded[s.init] as ort.Tensor;
const ms = (v: number[]) => median(v).toFixed(3);

const ticks: number[] = [];
const encoderRuns: number[] = [];
for (let i = 0; i < 3000; i++) {
  const t0 = performance.now();
  const out = await tick.run(feeds);
  ticks.push(performance.now() - t0);
  for (const s of m.state) feeds[s.input] = out[s.output] as ort.Tensor;
  if (i % 15 === 0) {
    const t1 = performance.now();
    await encoder.run({ [inputName]: x });
    encoderRuns.push(performance.now() - t1);
  }
}
const fetches: Record<string, ort.Tensor> = {};
for (const o of m.graphs.tick.outputs) {
  const dims = o.shape.slice(1) as number[];
  fetches[o.name] = new ort.Tensor("float32", new Float32Array(dims.reduce((a, b) => a * b, 1)), [1, ...dims]);
}
const preallocated: number[] = [];
for (let i = 0; i < 3000; i++) {
  const t0 = performance.now();
  await tick.run(feeds, fetches);
  preallocated.push(performance.now() - t0);
  for (const s of m.state)
    [feeds[s.input], fetches[s.output]] = [fetches[s.output] as ort.Tensor, feeds[s.input] as ort.Tensor];
}
const { version } = (await import("onnxruntime-node/package.json", { with: { type: "json" } })).default;
console.log(
  `onnxruntime-node ${version}, ${threads} thread(s): tick run ${ms(ticks.slice(500))} ms (preallocated outputs ${ms(preallocated.slice(500))} ms), encoder run ${ms(encoderRuns.slice(30))} ms`,
);
