/**
 * Resident memory of one worker's batch as ever larger batches pass through it: what the start-up
 * warm-up (CtmBatch.warmUp) is for. onnxruntime's CPU arena keeps the largest intermediates it has
 * needed, so memory rises with the largest batch so far and does not come back for smaller ones.
 *
 *   node --import tsx server/bench/probes/batchMemory.ts [--warm-up ROWS]
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import { CtmBatch } from "../../src/runtime/ctmBatch.ts";
import { benchModelFolder } from "../parts/benchModel.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const at = process.argv.indexOf("--warm-up");
const warmUp = at >= 0 ? Number(process.argv[at + 1]) : 0;
const rssMiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1]) / 1024;

const model = loadModelFolder(benchModelFolder(REPO));
const batch = await CtmBatch.open(model, { provider: "cpu", threads: 1 });
const rowSize = model.manifest.input.shape.reduce((a, b) => a * b, 1);
const samples: string[] = [`open ${rssMiB().toFixed(1)}`];
if (warmUp > 0) {
  await batch.warmUp(warmUp);
  samples.push(`warm-up(${warmUp}) ${rssMiB().toFixed(1)}`);
}
let next = 1;
for (const rows of [1, 2, 4, 8, 1, 16, 1, 32, 1, 64, 1, 64, 1]) {
  const ids = Array.from({ length: rows }, () => next++);
  await batch.join(ids, new Float32Array(rows * rowSize).fill(0.1));
  for (let t = 0; t < model.manifest.ticks.trained; t++) await batch.tick();
  batch.leave(ids);
  samples.push(`${rows}: ${rssMiB().toFixed(1)}`);
}
await batch.close();
console.log(`resident MiB after each batch (rows: MiB): ${samples.join(", ")}`);
