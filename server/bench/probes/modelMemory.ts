/**
 * What each served model costs a server at rest: resident memory and threads of npm start's entry
 * point serving 1, 10 and 30 copies of the shipped MNIST model (copies under other names: each is a
 * model of its own, with its own workers, sessions and warm-up), every flag at its default. Sizes a
 * pod's memory limit for a given number of models (docs/deploy.md).
 *
 *   node --import tsx server/bench/probes/modelMemory.ts [--counts 1,10,30] [--out out/model-memory.json]
 */
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startServerProcess } from "../../../tools/harness/index.ts";
import { machineRecord } from "../../../tools/harness/machine.ts";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const SOURCE = join(REPO, "models", "mnist-ctm", "1");

const { values: args } = parseArgs({
  options: {
    counts: { type: "string", default: "1,10,30" },
    out: { type: "string", default: "out/model-memory.json" },
  },
});

/** A models folder of `count` copies of the shipped model, named mnist-ctm-0, -1, ... */
function copies(count: number): string {
  const root = mkdtempSync(join(tmpdir(), "ctm-model-memory-"));
  for (let i = 0; i < count; i++) {
    const dir = join(root, `mnist-ctm-${i}`, "1");
    mkdirSync(dir, { recursive: true });
    for (const file of ["encoder.onnx", "tick.onnx", "calibration.json", "golden.json"])
      copyFileSync(join(SOURCE, file), join(dir, file));
    cpSync(join(SOURCE, "samples"), join(dir, "samples"), { recursive: true });
    const manifest = JSON.parse(readFileSync(join(SOURCE, "manifest.json"), "utf8"));
    manifest.name = `mnist-ctm-${i}`;
    writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
  }
  return root;
}

function status(pid: number): { rssMiB: number; threads: number } {
  const text = readFileSync(`/proc/${pid}/status`, "utf8");
  return {
    rssMiB: Number(/VmRSS:\s+(\d+) kB/.exec(text)?.[1] ?? 0) / 1024,
    threads: Number(/Threads:\s+(\d+)/.exec(text)?.[1] ?? 0),
  };
}

const rows: { models: number; rssMiB: number; threads: number; startUpS: number }[] = [];
for (const count of (args.counts as string).split(",").map(Number)) {
  const server = await startServerProcess(REPO, ["--models-dir", copies(count)]);
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const { rssMiB, threads } = status(server.pid);
  rows.push({
    models: count,
    rssMiB: Number(rssMiB.toFixed(0)),
    threads,
    startUpS: Number((server.startUpMs / 1000).toFixed(1)),
  });
  console.log(JSON.stringify(rows.at(-1)));
  await server.stop();
}
const [first, last] = [rows[0], rows.at(-1)];
const perModelMiB =
  first && last && last.models > first.models ? (last.rssMiB - first.rssMiB) / (last.models - first.models) : undefined;
const result = { date: new Date().toISOString(), machine: machineRecord(), rows, perModelMiB };
mkdirSync(dirname(args.out as string), { recursive: true });
writeFileSync(args.out as string, JSON.stringify(result, null, 2));
console.log(`per model: ${perModelMiB?.toFixed(1)} MiB`);
