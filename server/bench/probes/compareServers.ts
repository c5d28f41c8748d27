/**
 * Before and after, side by side: the same loads against this checkout's server and against the
 * server of another checkout (an earlier commit, unpacked elsewhere), alternating in every round and
 * swapping which goes first, so that a change in background load hits both alike.
 *
 *   git archive <commit> | tar -x -C /tmp/before && ln -s $PWD/node_modules /tmp/before/
 *   npm run bench                      # writes the request files used here (out/bench-*.bin)
 *   node --import tsx server/bench/probes/compareServers.ts --before /tmp/before [--rounds 3] [--seconds 5]
 *   node --import tsx server/bench/probes/compareServers.ts --before-flags "--threads 1" --after-flags "--threads 2"
 *
 * Both servers run with `npm start`'s defaults, --max-batch 64 and --max-queue 1024, plus their own
 * extra flags when given, on this checkout's models; without --before both are this checkout (to
 * compare settings). Prints answers/s per load, before and after, each round.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { startServerProcess } from "../../../tools/harness/index.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const arg = (name: string) => {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
};
const before = arg("before") ?? REPO;
if (!existsSync(join(before, "server/src/main.ts")))
  throw new Error("--before must be a checkout with server/src/main.ts");
const extra = (name: string) => (arg(name) ?? "").split(" ").filter(Boolean);
const ROUNDS = Number(arg("rounds") ?? 3);
const SECONDS = Number(arg("seconds") ?? 5);
const CALLERS = Number(arg("callers") ?? 64);
const LOADS = ["tensor", "png", "png-threshold-1", "png-threshold-0.9", "png-threshold-0.5"].map((name) => ({
  name,
  file: join(REPO, "out", `bench-${name}.bin`),
}));
for (const { file } of LOADS) if (!existsSync(file)) throw new Error(`${file} is missing: run npm run bench first`);

const run = promisify(execFile);
const flags = ["--provider", "cpu", "--max-batch", "64", "--max-queue", "1024", "--models-dir", join(REPO, "models")];
const servers = {
  before: await startServerProcess(resolve(before), [...flags, ...extra("before-flags")]),
  after: await startServerProcess(REPO, [...flags, ...extra("after-flags")]),
};
async function saturate(port: number, seconds: number, file: string): Promise<number> {
  const { stdout } = await run(
    process.execPath,
    [
      "--import",
      "tsx",
      "server/bench/children/loadGenerator.ts",
      String(port),
      String(CALLERS),
      "0",
      `${seconds}:${file}`,
    ],
    { cwd: REPO, encoding: "utf8" },
  );
  const [result] = JSON.parse(stdout) as { completed: number; seconds: number; errors: number }[];
  if (!result || result.errors > 0) throw new Error(`${result?.errors} requests failed under load`);
  return result.completed / result.seconds;
}
for (const server of Object.values(servers)) await saturate(server.port, 3, LOADS[1]?.file as string);

const rps = new Map<string, { before: number[]; after: number[] }>();
for (let round = 0; round < ROUNDS; round++) {
  for (const load of LOADS) {
    const order = round % 2 === 0 ? (["before", "after"] as const) : (["after", "before"] as const);
    const entry = rps.get(load.name) ?? { before: [], after: [] };
    for (const side of order) entry[side].push(await saturate(servers[side].port, SECONDS, load.file));
    rps.set(load.name, entry);
  }
  console.error(`round ${round + 1}/${ROUNDS}`);
}
await Promise.all(Object.values(servers).map((s) => s.stop()));
const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
console.log(`| load (${CALLERS} callers) | before: answers/s (rounds) | after: answers/s (rounds) | after / before |`);
console.log("|---|---|---|---|");
for (const [name, { before: b, after: a }] of rps) {
  const list = (v: number[]) => v.map((x) => x.toFixed(0)).join(", ");
  console.log(
    `| ${name} | ${mean(b).toFixed(0)} (${list(b)}) | ${mean(a).toFixed(0)} (${list(a)}) | ${(mean(a) / mean(b)).toFixed(2)}x |`,
  );
}
