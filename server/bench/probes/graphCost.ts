/**
 * What one run of each graph costs by batch size, as the server's worker runs them (CtmBatch), out of
 * load: the encoder once per group of requests joining, the tick graph once per tick for every row.
 * It shows where batching pays, why a busy server's encoder runs, in small groups, cost more per
 * request than its tick runs, and which intra-op thread count and spinning setting run the graphs
 * fastest at each batch size (docs/benchmarks.md, "Threads and spinning").
 *
 *   node --import tsx server/bench/probes/graphCost.ts [--threads N] [--spinning 0|1] [--repeats 30] [--cycles 2]
 *                                              [--model mnist-ctm]
 *
 * Without --threads it measures 1 and 2 intra-op threads, without --spinning both settings. Every
 * setting is measured once per cycle, in turn, so that a change in background load hits them alike.
 * Prints medians over all cycles, in milliseconds, and the share of a request's graph time that is
 * tick runs when it runs every trained tick (threshold 1.0): T tick runs against one encoder run.
 */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { median } from "../../../tools/harness/statistics.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import { benchModelFolder, DEFAULT_BENCH_MODEL } from "../parts/benchModel.ts";
import { BATCH_SIZES, measureGraphCosts } from "../parts/graphCostModel.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const text = (name: string) => {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
};
const flag = (name: string) => (text(name) === undefined ? undefined : Number(text(name)));
const repeats = flag("repeats") ?? 30;
const cycles = flag("cycles") ?? 2;
const threadCounts = flag("threads") ? [flag("threads") as number] : [1, 2];
const spinnings = flag("spinning") === undefined ? [false, true] : [flag("spinning") === 1];

const model = loadModelFolder(benchModelFolder(REPO, text("model") ?? DEFAULT_BENCH_MODEL));
const ticks = model.manifest.ticks.trained;

const settings = threadCounts.flatMap((threads) => spinnings.map((spinning) => ({ threads, spinning })));
const samples = settings.map(() => BATCH_SIZES.map(() => ({ encoder: [] as number[], tick: [] as number[] })));
for (let cycle = 0; cycle < cycles; cycle++) {
  for (const [s, setting] of settings.entries()) {
    const measured = await measureGraphCosts(model, setting, repeats);
    measured.samples.forEach((m, b) => {
      const into = (samples[s] as { encoder: number[]; tick: number[] }[])[b] as { encoder: number[]; tick: number[] };
      into.encoder.push(...m.encoder);
      into.tick.push(...m.tick);
    });
  }
}

console.log(`${model.manifest.name}/${model.manifest.version}: ${ticks} trained ticks`);
console.log(
  `| threads | spinning | rows | encoder run | encoder per row | tick run | tick per row | ticks' share at ${ticks} ticks |`,
);
console.log("|---|---|---|---|---|---|---|---|");
for (const [s, { threads, spinning }] of settings.entries()) {
  for (const [b, rows] of BATCH_SIZES.entries()) {
    const { encoder, tick } = (samples[s] as { encoder: number[]; tick: number[] }[])[b] as {
      encoder: number[];
      tick: number[];
    };
    const [e, t] = [median(encoder), median(tick)];
    const share = (ticks * t) / (e + ticks * t);
    console.log(
      `| ${threads} | ${spinning ? "on" : "off"} | ${rows} | ${e.toFixed(2)} ms | ${(e / rows).toFixed(3)} ms | ${t.toFixed(2)} ms | ${(t / rows).toFixed(3)} ms | ${(share * 100).toFixed(1)}% |`,
    );
  }
}
