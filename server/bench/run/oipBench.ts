/**
 * `npm run bench:oip`: Triton's perf_analyzer against the server's Open Inference Protocol, over gRPC
 * (`-i grpc`) and over HTTP/REST (`-i http`, Triton's binary tensor extension), beside `npm run
 * loadtest` against its ctm.v1 API, at the same points: closed-loop concurrency 1, 4, 16 (by default),
 * unary calls, certainty threshold 0.9, the model's sample images. The three alternate point by point
 * against one server started as `npm start` starts it, so that background load on a shared machine
 * hits them alike. Writes out/bench-oip.json and prints a Markdown table.
 *
 *   npm run bench:oip -- [--model mnist-ctm] [--concurrency 1,4,16] [--seconds 5] [--threshold 0.9]
 *                        [--out out/bench-oip.json]
 *
 * perf_analyzer (2.51, the newest that runs here: perfAnalyzerTool.ts) sends request parameters only
 * over gRPC ("The --request-parameter option is currently only supported by gRPC protocol"), so its
 * HTTP requests run the server's default policy: certainty threshold 0.9, which is why --threshold
 * must stay 0.9 for the HTTP column to measure the same requests.
 *
 * perf_analyzer's measurement: three windows of --seconds each (stability check off: this machine is
 * too noisy for its 10% rule), reported as their average; the load test: a 1 s warm-up and one window
 * of --seconds.
 */
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { freePort, startServerProcess } from "../../../tools/harness/index.ts";
import { loadAverage, machineRecord } from "../../../tools/harness/machine.ts";
import { DEFAULT_CERTAINTY_THRESHOLD } from "../../src/engine/haltPolicy.ts";
import { listRepository, loadModelFolder } from "../../src/model/modelFolder.ts";
import { perfAnalyzer } from "../parts/perfAnalyzerTool.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const run = promisify(execFile);

const USAGE = `Usage: npm run bench:oip -- [options]

Triton's perf_analyzer (Open Inference Protocol, over gRPC and over HTTP/REST) beside npm run loadtest
(ctm.v1), point by point.

  --model <name>        the model to send its sample images to (default mnist-ctm)
  --concurrency <list>  closed-loop concurrency points (default 1,4,16)
  --seconds <s>         seconds per measurement window (default 5)
  --threshold <t>       certainty threshold of every request (default 0.9; perf_analyzer's HTTP
                        requests carry none and run the server's default, 0.9, so the HTTP column
                        is measured only at 0.9 and left out otherwise)
  --out <file>          results JSON (default out/bench-oip.json)
  --help                this text`;

// Parsed before anything starts, so that --help and a mistyped option answer at once.
let parsed: ReturnType<typeof parseOptions>;
function parseOptions() {
  return parseArgs({
    args: process.argv.slice(2),
    strict: true,
    options: {
      model: { type: "string", default: "mnist-ctm" },
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
const MODEL = parsed.model;
const OUT = resolve(REPO, parsed.out);
if (CONCURRENCY.some((c) => !Number.isInteger(c) || c < 1)) throw new Error("--concurrency needs integers >= 1");
if (!(SECONDS > 0)) throw new Error("--seconds needs a number > 0");
if (!(THRESHOLD > 0 && THRESHOLD <= 1)) throw new Error("--threshold must be in (0, 1]");
/** perf_analyzer's HTTP requests carry no threshold: they measure the same requests only at the default. */
const HTTP = THRESHOLD === DEFAULT_CERTAINTY_THRESHOLD;
if (!HTTP) {
  console.error(
    `--threshold ${THRESHOLD}: the HTTP column is left out, since perf_analyzer sends no request parameters over HTTP and its requests would run the server's default threshold, ${DEFAULT_CERTAINTY_THRESHOLD}`,
  );
}
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
  protocol: "grpc" | "http",
  address: string,
  data: string,
  concurrency: number,
): Promise<Point & { output: string }> {
  const csv = join(WORK, `perf-analyzer-${protocol}-c${concurrency}.csv`);
  const args = [
    ...["-m", model, "-u", address, "-i", protocol, "--input-data", data],
    // perf_analyzer has no floating-point parameter type; the server reads a number in a string. Over
    // HTTP it sends none: the server's default threshold applies (checked equal to THRESHOLD below).
    ...(protocol === "grpc" ? ["--request-parameter", `certainty_threshold:${THRESHOLD}:string`] : []),
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

/** What this benchmark reads of `npm run loadtest`'s result.json (loadtest/src/loadtestResult.ts has the rest). */
interface LoadtestResultFile {
  points: { throughputRps: number; ok: number; latencyMs: { p50: number; p90: number; p99: number; mean: number } }[];
}

async function loadtestPoint(address: string, concurrency: number): Promise<Point> {
  const out = join(WORK, `loadtest-c${concurrency}`);
  await run(
    process.execPath,
    [
      ...["--import", "tsx", "loadtest/src/main.ts", "run", "--address", address, "--model", MODEL],
      ...["--concurrency", String(concurrency), "--thresholds", String(THRESHOLD), "--calls", "unary"],
      ...["--duration", `${SECONDS}s`, "--warmup", "1s", "--no-plots", "--no-progress", "--out", out],
    ],
    { cwd: REPO, maxBuffer: 1 << 24 },
  );
  const result = JSON.parse(readFileSync(join(out, "result.json"), "utf8")) as LoadtestResultFile;
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

const folder = listRepository(join(REPO, "models")).find((m) => m.name === MODEL)?.versions[0];
if (!folder) throw new Error(`--model ${MODEL}: models/${MODEL}/<version>/manifest.json does not exist`);
const model = loadModelFolder(folder.dir);
const { manifest } = model;
if (!manifest.samples) throw new Error(`model ${manifest.name} has no samples to send`);
const tool = perfAnalyzer(join(dirname(OUT), "perf-analyzer"), (line) => console.error(line));
const data = inputData(join(model.dir, dirname(manifest.samples)));
const startedAt = new Date().toISOString();
const machine = machineRecord();
const httpPort = await freePort();
const server = await startServerProcess(REPO, ["--provider", "cpu", "--http-port", String(httpPort)]);
const address = `127.0.0.1:${server.port}`;
const httpAddress = `127.0.0.1:${httpPort}`;
console.error(
  `server at ${address} (REST at ${httpAddress}); perf_analyzer ${tool.version}; load average ${machine.loadAverageAtStart.join(" ")}`,
);
const points: { concurrency: number; perfAnalyzer: Point; perfAnalyzerHttp: Point | null; loadtest: Point }[] = [];
try {
  for (const concurrency of CONCURRENCY) {
    const { output, ...pa } = await perfAnalyzerPoint(tool, manifest.name, "grpc", address, data, concurrency);
    writeFileSync(join(WORK, `perf-analyzer-grpc-c${concurrency}.txt`), output);
    let http: Point | null = null;
    if (HTTP) {
      const { output: httpOutput, ...measured } = await perfAnalyzerPoint(
        tool,
        manifest.name,
        "http",
        httpAddress,
        data,
        concurrency,
      );
      writeFileSync(join(WORK, `perf-analyzer-http-c${concurrency}.txt`), httpOutput);
      http = measured;
    }
    const lt = await loadtestPoint(address, concurrency);
    points.push({ concurrency, perfAnalyzer: pa, perfAnalyzerHttp: http, loadtest: lt });
    console.error(
      `concurrency ${concurrency}: perf_analyzer gRPC ${pa.throughputRps.toFixed(1)} req/s, HTTP ${http ? `${http.throughputRps.toFixed(1)} req/s` : "not measured"}, loadtest ${lt.throughputRps.toFixed(1)} req/s`,
    );
  }
} finally {
  await server.stop();
}
const loadAverageAtEnd = loadAverage();
const result = {
  startedAt,
  finishedAt: new Date().toISOString(),
  command: ["npm", "run", "bench:oip", "--", ...process.argv.slice(2)],
  machine: { ...machine, loadAverageAtEnd },
  model: `${manifest.name}/${manifest.version}`,
  settings: { concurrency: CONCURRENCY, seconds: SECONDS, threshold: THRESHOLD, perfAnalyzer: tool.version },
  points,
};
writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`);

const f = (n: number, digits = 2) => n.toFixed(digits);
const cells = (p: Point | null) =>
  p ? `${f(p.throughputRps, 1)} | ${f(p.p50Ms)} / ${f(p.p90Ms)} / ${f(p.p99Ms)}` : "- | -";
const lines = [
  `| concurrency | perf_analyzer -i grpc (v2 ModelInfer) req/s | p50 / p90 / p99 ms | perf_analyzer -i http (v2 REST infer) req/s | p50 / p90 / p99 ms | loadtest (ctm.v1 Classify) req/s | p50 / p90 / p99 ms | gRPC / loadtest | HTTP / gRPC |`,
  "|---|---|---|---|---|---|---|---|---|",
  ...points.map(
    ({ concurrency, perfAnalyzer: pa, perfAnalyzerHttp: http, loadtest: lt }) =>
      `| ${concurrency} | ${cells(pa)} | ${cells(http)} | ${cells(lt)} | ${f(pa.throughputRps / lt.throughputRps)} | ${http ? f(http.throughputRps / pa.throughputRps) : "-"} |`,
  ),
];
console.log(
  `${startedAt} - ${result.finishedAt}; load average ${machine.loadAverageAtStart.join(" ")} -> ${loadAverageAtEnd.join(" ")}`,
);
console.log(lines.join("\n"));
console.error(`wrote ${OUT}`);
