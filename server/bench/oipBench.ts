/**
 * `npm run bench:oip`: Triton's perf_analyzer against the server's Open Inference Protocol, beside
 * `npm run loadtest` against its ctm.v1 API, at the same points: closed-loop concurrency 1, 4, 16 (by
 * default), unary calls, certainty threshold 0.9, the model's sample images. The two alternate point
 * by point against one server started as `npm start` starts it, so that background load on a shared
 * machine hits both alike. Writes out/bench-oip.json and prints a Markdown table.
 *
 *   npm run bench:oip -- [--concurrency 1,4,16] [--seconds 5] [--threshold 0.9] [--out out/bench-oip.json]
 *
 * perf_analyzer's measurement: three windows of --seconds each (stability check off: this machine is
 * too noisy for its 10% rule), reported as their average; the load test: a 1 s warm-up and one window
 * of --seconds.
 */
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import type { LoadtestResult } from "../../loadtest/src/loadtestResult.ts";
import { discoverModelFolders, loadModelFolder } from "../src/model/modelFolder.ts";
import { perfAnalyzer } from "./perfAnalyzerTool.ts";
import { startServerProcess } from "./serverProcess.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const run = promisify(execFile);

const USAGE = `Usage: npm run bench:oip -- [options]

Triton's perf_analyzer (Open Inference Protocol) beside npm run loadtest (ctm.v1), point by point.

  --concurrency <list>  closed-loop concurrency points (default 1,4,16)
  --seconds <s>         seconds per measurement window (default 5)
  --threshold <t>       certainty threshold of every request (default 0.9)
  --out <file>          results JSON (default out/bench-oip.json)
  --help                this text`;

// Parsed before anything starts, so that --help and a mistyped option answer at once.
let parsed: ReturnType<typeof parseOptions>;
function parseOptions() {
  return parseArgs({
    args: process.argv.slice(2),
    strict: true,
    options: {
      concurrency: { type: "string", default: "1,4,16" },
      seconds: { type: "string", default: "5" },
      threshold: { type: "string", default: "0.9" },
      out: { type: "string", default: "out/bench-oip.json" },
      help: { type: "boolean", default: false },
    },
  }).values;
}
try {
  parsed = parseOptions();
} catch (error) {
  console.error(`${(error as Error).message}\n\n${USAGE}`);
  process.exit(2);
}
if (parsed.help) {
  console.log(USAGE);
  process.exit(0);
}
const CONCURRENCY = parsed.concurrency.split(",").map(Number);
const SECONDS = Number(parsed.seconds);
const THRESHOLD = Number(parsed.threshold);
const OUT = resolve(REPO, parsed.out);
if (CONCURRENCY.some((c) => !Number.isInteger(c) || c < 1)) throw new Error("--concurrency needs integers >= 1");
if (!(SECONDS > 0)) throw new Error("--seconds needs a number > 0");
if (!(THRESHOLD > 0 && THRESHOLD <= 1)) throw new Error("--threshold must be in (0, 1]");
const WORK = join(dirname(OUT), "bench-oip");
mkdirSync(WORK, { recursive: true });

interface Point {
  throughputRps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  meanMs: number;
  requests: number;
}

/** perf_analyzer's input-data file: every sample image as a BYTES [1] tensor (length-prefixed, base64). */
function inputData(samplesDir: string): string {
  const labels = JSON.parse(readFileSync(join(samplesDir, "labels.json"), "utf8")) as { file: string }[];
  const data = labels.map(({ file }) => {
    const image = readFileSync(join(samplesDir, file));
    const length = Buffer.alloc(4);
    length.writeUInt32LE(image.length);
    return { image: { b64: Buffer.concat([length, image]).toString("base64"), shape: [1] } };
  });
  const path = join(WORK, "input-data.json");
  writeFileSync(path, JSON.stringify({ data }));
  return path;
}

async function perfAnalyzerPoint(
  tool: ReturnType<typeof perfAnalyzer>,
  model: string,
  address: string,
  data: string,
  concurrency: number,
): Promise<Point & { output: string }> {
  const csv = join(WORK, `perf-analyzer-c${concurrency}.csv`);
  const args = [
    ...["-m", model, "-u", address, "-i", "grpc", "--input-data", data],
    // perf_analyzer has no floating-point parameter type; the server reads a number in a string.
    ...["--request-parameter", `certainty_threshold:${THRESHOLD}:string`],
    ...["--concurrency-range", String(concurrency), "-p", String(SECONDS * 1000)],
    ...["-s", "1000", "--max-trials", "3", "-f", csv],
  ];
  const { stdout } = await run(tool.binary, args, { env: tool.env, maxBuffer: 1 << 24 });
  const [header, row] = readFileSync(csv, "utf8").trim().split("\n") as [string, string];
  const columns = header.split(",");
  const value = (name: string) => Number(row.split(",")[columns.indexOf(name)]);
  const count = /Request count: (\d+)/.exec(stdout);
  return {
    throughputRps: value("Inferences/Second"),
    p50Ms: value("p50 latency") / 1000,
    p90Ms: value("p90 latency") / 1000,
    p99Ms: value("p99 latency") / 1000,
    meanMs: value("Avg latency") / 1000,
    requests: count ? Number(count[1]) : 0,
    output: stdout,
  };
}

async function loadtestPoint(address: string, concurrency: number): Promise<Point> {
  const out = join(WORK, `loadtest-c${concurrency}`);
  await run(
    process.execPath,
    [
      ...["--import", "tsx", "loadtest/src/main.ts", "run", "--address", address],
      ...["--concurrency", String(concurrency), "--thresholds", String(THRESHOLD), "--calls", "unary"],
      ...["--duration", `${SECONDS}s`, "--warmup", "1s", "--no-plots", "--no-progress", "--out", out],
    ],
    { cwd: REPO, maxBuffer: 1 << 24 },
  );
  const result = JSON.parse(readFileSync(join(out, "result.json"), "utf8")) as LoadtestResult;
  const point = result.points[0];
  if (!point) throw new Error(`${out}/result.json has no point`);
  const { latencyMs } = point;
  return {
    throughputRps: point.throughputRps,
    p50Ms: latencyMs.p50,
    p90Ms: latencyMs.p90,
    p99Ms: latencyMs.p99,
    meanMs: latencyMs.mean,
    requests: point.ok,
  };
}

const model = loadModelFolder(discoverModelFolders(join(REPO, "models"))[0] as string);
const { manifest } = model;
if (!manifest.samples) throw new Error(`model ${manifest.name} has no samples to send`);
const tool = perfAnalyzer(join(dirname(OUT), "perf-analyzer"), (line) => console.error(line));
const data = inputData(join(model.dir, dirname(manifest.samples)));
const startedAt = new Date().toISOString();
const loadAtStart = loadavg().map((l) => Number(l.toFixed(2)));
const server = await startServerProcess(REPO, ["--provider", "cpu"]);
const address = `127.0.0.1:${server.port}`;
console.error(`server at ${address}; perf_analyzer ${tool.version}; load average ${loadAtStart.join(" ")}`);
const points: { concurrency: number; perfAnalyzer: Point; loadtest: Point }[] = [];
try {
  for (const concurrency of CONCURRENCY) {
    const { output, ...pa } = await perfAnalyzerPoint(tool, manifest.name, address, data, concurrency);
    writeFileSync(join(WORK, `perf-analyzer-c${concurrency}.txt`), output);
    const lt = await loadtestPoint(address, concurrency);
    points.push({ concurrency, perfAnalyzer: pa, loadtest: lt });
    console.error(
      `concurrency ${concurrency}: perf_analyzer ${pa.throughputRps.toFixed(1)} req/s, loadtest ${lt.throughputRps.toFixed(1)} req/s`,
    );
  }
} finally {
  await server.stop();
}
const loadAtEnd = loadavg().map((l) => Number(l.toFixed(2)));
const result = {
  startedAt,
  finishedAt: new Date().toISOString(),
  command: ["npm", "run", "bench:oip", "--", ...process.argv.slice(2)],
  machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? "", node: process.version, loadAtStart, loadAtEnd },
  model: `${manifest.name}/${manifest.version}`,
  settings: { concurrency: CONCURRENCY, seconds: SECONDS, threshold: THRESHOLD, perfAnalyzer: tool.version },
  points,
};
writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`);

const f = (n: number, digits = 2) => n.toFixed(digits);
const lines = [
  `| concurrency | perf_analyzer (v2 ModelInfer) req/s | p50 / p90 / p99 ms | loadtest (ctm.v1 Classify) req/s | p50 / p90 / p99 ms | throughput ratio |`,
  "|---|---|---|---|---|---|",
  ...points.map(
    ({ concurrency, perfAnalyzer: pa, loadtest: lt }) =>
      `| ${concurrency} | ${f(pa.throughputRps, 1)} | ${f(pa.p50Ms)} / ${f(pa.p90Ms)} / ${f(pa.p99Ms)} | ${f(lt.throughputRps, 1)} | ${f(lt.p50Ms)} / ${f(lt.p90Ms)} / ${f(lt.p99Ms)} | ${f(pa.throughputRps / lt.throughputRps)} |`,
  ),
];
console.log(`${startedAt} - ${result.finishedAt}; load average ${loadAtStart.join(" ")} -> ${loadAtEnd.join(" ")}`);
console.log(lines.join("\n"));
console.error(`wrote ${OUT}`);
