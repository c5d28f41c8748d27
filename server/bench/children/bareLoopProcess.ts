/**
 * The Node bare loop in a process of its own, driven like bare_loop.py (--serve): it prints
 * {"onnxruntime": version}, then runs one request per line read from stdin and prints its
 * milliseconds. In the benchmark's own process the loop would share an event loop with gRPC clients
 * whose leftover work lands inside its awaits; here it is measured as Python's is.
 *
 *   node --import tsx server/bench/children/bareLoopProcess.ts MODEL_DIR --threads N --ticks T [--batch]
 *
 * --batch runs the request as the server's worker does (CtmBatch: one row joins, every tick, leaves:
 * preallocated feeds and outputs) instead of bareLoop.ts's plain session.run calls.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import { CtmBatch } from "../../src/runtime/ctmBatch.ts";
import { openBareLoop } from "../parts/bareLoop.ts";

const [dir] = process.argv.slice(2);
const option = (name: string) => {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : undefined;
};
const model = loadModelFolder(dir as string);
const threads = option("threads") ?? 1;
const ticks = option("ticks") ?? model.manifest.ticks.trained;
const golden = model.manifest.golden
  ? (JSON.parse(readFileSync(join(model.dir, model.manifest.golden), "utf8")) as { cases: { input: number[] }[] })
  : undefined;
const size = model.manifest.input.shape.reduce((a, b) => a * b, 1);
const input = Float32Array.from(golden?.cases[0]?.input ?? new Array(size).fill(0));

let once: () => Promise<number>;
if (process.argv.includes("--batch")) {
  const batch = await CtmBatch.open(model, { provider: "cpu", threads });
  let id = 1;
  once = async () => {
    const started = performance.now();
    const ids = [id++];
    await batch.join(ids, input.slice());
    for (let t = 0; t < ticks; t++) await batch.tick();
    batch.leave(ids);
    return performance.now() - started;
  };
} else {
  const bare = await openBareLoop(model, threads);
  once = () => bare.run(input, ticks);
}
for (let i = 0; i < 10; i++) await once();
const { version } = (await import("onnxruntime-node/package.json", { with: { type: "json" } })).default;
process.stdout.write(`${JSON.stringify({ onnxruntime: `node ${version}` })}\n`);
for await (const _ of createInterface({ input: process.stdin })) process.stdout.write(`${await once()}\n`);
process.exit(0);
