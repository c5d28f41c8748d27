/**
 * What one run of each graph costs by batch size, as the server's worker runs them (CtmBatch), out of
 * load: the encoder once per group of requests joining, the tick graph once per tick for every row.
 * It shows where batching pays and why a busy server's encoder runs, in small groups, cost more per
 * request than its tick runs (docs/benchmarks.md, "Where batched throughput goes").
 *
 *   node --import tsx server/bench/graphCost.ts [--threads N] [--repeats 30] [--model mnist-ctm]
 *
 * Without --threads it measures 1 and 2 intra-op threads. Prints medians in milliseconds, and the share
 * of a request's graph time that is tick runs when it runs every trained tick (threshold 1.0): T tick
 * runs against one encoder run.
 */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModelFolder } from "../src/model/modelFolder.ts";
import { CtmBatch } from "../src/runtime/ctmBatch.ts";
import { benchModelFolder, DEFAULT_BENCH_MODEL } from "./benchModel.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const text = (name: string) => {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
};
const flag = (name: string) => (text(name) === undefined ? undefined : Number(text(name)));
const repeats = flag("repeats") ?? 30;
const threadCounts = flag("threads") ? [flag("threads") as number] : [1, 2];
const BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64];

const wanted = text("model") ?? DEFAULT_BENCH_MODEL;
const model = loadModelFolder(benchModelFolder(REPO, wanted));
const ticks = model.manifest.ticks.trained;
const rowSize = model.manifest.input.shape.reduce((a, b) => a * b, 1);
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

console.log(`${model.manifest.name}/${model.manifest.version}: ${ticks} trained ticks`);
console.log(
  `| threads | rows | encoder run | encoder per row | tick run | tick per row | ticks' share at ${ticks} ticks |`,
);
console.log("|---|---|---|---|---|---|---|");
for (const threads of threadCounts) {
  const batch = await CtmBatch.open(model, { provider: "cpu", threads });
  await batch.warmUp(Math.max(...BATCH_SIZES));
  let next = 1;
  for (const rows of BATCH_SIZES) {
    const encoder: number[] = [];
    const tick: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const ids = Array.from({ length: rows }, () => next++);
      encoder.push(await batch.join(ids, new Float32Array(rows * rowSize).fill(0.1)));
      tick.push((await batch.tick()).runMs);
      batch.leave(ids);
    }
    const [e, t] = [median(encoder), median(tick)];
    const share = (ticks * t) / (e + ticks * t);
    console.log(
      `| ${threads} | ${rows} | ${e.toFixed(2)} ms | ${(e / rows).toFixed(3)} ms | ${t.toFixed(2)} ms | ${(t / rows).toFixed(3)} ms | ${(share * 100).toFixed(1)}% |`,
    );
  }
  await batch.close();
}
