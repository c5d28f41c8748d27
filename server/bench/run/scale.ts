/**
 * `npm run bench:scale`: how the server's costs grow with the model, at the paper's sizes, side by
 * side in one run (docs/scale.md).
 *
 *   npm run bench:scale -- --preset imagenet|maze|mnist|tiny-imagenet|tiny-maze|tiny-mnist
 *       [--ticks N] [--requests 3] [--tick-points 5] [--seconds 10] [--warm-up 3]
 *       [--concurrency 1,2,4,8,16,32,64] [--batches 1,8,32,64] [--encoder-batches LIST]
 *       [--early-exit-callers N] [--max-batch 64] [--threads N] [--provider cpu|cuda]
 *       [--external-data] [--rebuild] [--golden N] [--cache .cache/scale] [--out out/scale/PRESET]
 *
 * Builds (once; cached) and exports a random-weight model of the preset (ctm.scale), starts the server
 * on it as `npm start` does, twice (tick-level batching on: --max-batch 64; off: --max-batch 1), and
 * measures: export time and files; start-up time and resident memory; each graph's run by batch size
 * and the memory an active request holds; a lone request's latency against ticks run, with a line fit;
 * throughput against concurrency, batched and not; the worker's time outside onnxruntime as a share of
 * the tick runs; throughput when requests halt after T/4, T/2 and T ticks. Every request runs exactly
 * the ticks asked (min_ticks = max_ticks), with one fixed raw float32 input (no image preprocessing).
 * --ticks sets T (default: the preset's trained ticks). Prints a table; writes scale.json and
 * scale.png under --out.
 */
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import {
  createCtmClient,
  type StartedServer,
  scrapeMetrics,
  startServerProcess,
  sumOf,
} from "../../../tools/harness/index.ts";
import { loadAverage, machineRecord } from "../../../tools/harness/machine.ts";
import { writeScalePlots } from "../../../tools/harness/plot/scalePlots.ts";
import { linearFit, median } from "../../../tools/harness/statistics.ts";
import { parseConfig } from "../../src/config.ts";
import type { Manifest } from "../../src/model/manifest.ts";
import { discoverModelFolders, loadModelFolder } from "../../src/model/modelFolder.ts";
import { type ClassifyRequestMessage, loadProtocol } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { measureGraphs, residentMiB } from "../parts/scaleGraphs.ts";
import { scaleModel } from "../parts/scaleModel.ts";
import { measureSchedulerOverhead } from "../parts/schedulerOverhead.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const PRESETS = ["imagenet", "maze", "mnist", "tiny-imagenet", "tiny-maze", "tiny-mnist"];
const GIB24_MIB = 24 * 1024;

// ---------------------------------------------------------------- options
const USAGE = `Usage: npm run bench:scale -- --preset imagenet|maze|mnist|tiny-imagenet|tiny-maze|tiny-mnist [options]

How the server's costs grow with the model, side by side in one run (docs/scale.md).

  --ticks <n>               ticks T each request runs (default: the preset's trained ticks)
  --requests <n>            lone requests per tick point (default 3)
  --tick-points <n>         tick counts between 1 and T for the latency fit (default 5)
  --seconds <s>, --warm-up <s>  each load window and its warm-up (default 10, 3)
  --concurrency <list>      callers for throughput, batched and not (default 1,2,4,8,16,32,64)
  --batches <list>, --encoder-batches <list>  graph batch sizes (default 1,8,32,64)
  --early-exit-callers <n>  callers for the T/4, T/2, T payoff (default: the most concurrency)
  --max-batch <n>           the batched server's --max-batch (default 64)
  --threads <n>, --provider cpu|cuda  passed to the server
  --external-data           export the graphs with external data files
  --rebuild, --golden <n>, --cache <dir>, --out <dir>
  --help                    this text`;
const argv = process.argv.slice(2);
if (argv.includes("--help")) {
  console.log(USAGE);
  process.exit(0);
}
const raw = (name: string) => {
  const at = argv.indexOf(`--${name}`);
  return at >= 0 ? argv[at + 1] : undefined;
};
function number(name: string, fallback: number, min = 1): number {
  const text = raw(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < min) throw new Error(`--${name} must be a number >= ${min}, got ${text}`);
  return value;
}
function list(name: string, fallback: number[]): number[] {
  const text = raw(name);
  if (text === undefined) return fallback;
  const values = text.split(",").map(Number);
  if (values.some((v) => !Number.isInteger(v) || v < 1))
    throw new Error(`--${name} must be a comma-separated list of integers >= 1, got ${text}`);
  return values;
}
const preset = raw("preset") ?? "";
if (!PRESETS.includes(preset)) throw new Error(`--preset must be one of ${PRESETS.join(", ")}, got "${preset}"`);
const OUT = resolve(REPO, raw("out") ?? `out/scale/${preset}`);
const CACHE = resolve(REPO, raw("cache") ?? ".cache/scale");
const REQUESTS = number("requests", 3);
const TICK_POINTS = number("tick-points", 5, 2);
const SECONDS = number("seconds", 10, 0.1);
const WARM_UP = number("warm-up", 3, 0);
const CONCURRENCY = list("concurrency", [1, 2, 4, 8, 16, 32, 64]);
const BATCHES = list("batches", [1, 8, 32, 64]);
const ENCODER_BATCHES = list("encoder-batches", BATCHES);
const MAX_BATCH = number("max-batch", 64);
const EARLY_EXIT_CALLERS = number("early-exit-callers", Math.max(...CONCURRENCY));
const TICK_REPEATS = number("tick-repeats", 5);
const ENCODER_REPEATS = number("encoder-repeats", 3);
const SCHEDULER_ROWS = number("scheduler-rows", Math.min(MAX_BATCH, Math.max(...BATCHES)));
const PROVIDER = raw("provider") ?? "cpu";
if (PROVIDER !== "cpu" && PROVIDER !== "cuda") throw new Error(`--provider must be cpu or cuda, got ${PROVIDER}`);
const serverFlags = ["--provider", PROVIDER, "--max-queue", "1024"];
if (raw("threads")) serverFlags.push("--threads", String(number("threads", 1)));
const serverConfig = parseConfig(serverFlags, process.env);
if (serverConfig === "help") throw new Error("the server flags asked for help. This is a bug.");

// ---------------------------------------------------------------- helpers
const product = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);
const mib = (bytes: number) => bytes / 2 ** 20;

function inputFor(manifest: Manifest, dir: string): Float32Array {
  if (manifest.golden) {
    const golden = JSON.parse(readFileSync(join(dir, manifest.golden), "utf8")) as { cases: { input: number[] }[] };
    const first = golden.cases[0]?.input;
    if (first) return Float32Array.from(first);
  }
  // Mid-grey, normalised as the manifest says: inside the range the server accepts for an image model.
  const size = product(manifest.input.shape);
  const image = manifest.input.image;
  if (!image) return new Float32Array(size);
  const plane = size / image.channels;
  return Float32Array.from({ length: size }, (_, i) => {
    const c = Math.floor(i / plane);
    return (0.5 - (image.normalize.mean[c] as number)) / (image.normalize.std[c] as number);
  });
}

/** Sums of the server's own histograms and counters, in milliseconds (counts as counts). */
async function serverTimes(server: StartedServer) {
  const samples = await scrapeMetrics(`http://127.0.0.1:${server.metricsPort}/metrics`);
  const sum = (name: string) => sumOf(samples, name);
  return {
    stepMs: sum("ctm_worker_step_seconds_total") * 1000,
    tickMs: sum("ctm_tick_run_seconds_sum") * 1000,
    encoderMs: sum("ctm_encoder_run_seconds_sum") * 1000,
    tickRuns: sum("ctm_tick_run_seconds_count"),
    tickRows: sum("ctm_tick_rows_total"),
  };
}
type Times = Awaited<ReturnType<typeof serverTimes>>;
/** The worker's time outside onnxruntime between two scrapes, as a share of its tick runs. */
function outside(before: Times, after: Times) {
  const step = after.stepMs - before.stepMs;
  const tick = after.tickMs - before.tickMs;
  const encoder = after.encoderMs - before.encoderMs;
  const runs = after.tickRuns - before.tickRuns;
  return {
    outsideMs: step - tick - encoder,
    tickRunsMs: tick,
    encoderRunsMs: encoder,
    shareOfTickRuns: (step - tick - encoder) / tick,
    perTickMs: (step - tick - encoder) / runs,
    meanBatch: (after.tickRows - before.tickRows) / runs,
  };
}

// ---------------------------------------------------------------- run
async function main() {
  const machine = {
    ...machineRecord(),
    provider: PROVIDER,
    threads: serverConfig === "help" ? 0 : serverConfig.threads,
  };
  mkdirSync(OUT, { recursive: true });
  const log = (line: string) => console.error(`[bench:scale ${preset}] ${line}`);
  log(`load ${machine.loadAverageAtStart}; building or reusing the model in ${CACHE}`);
  const buildStarted = performance.now();
  const { modelsDir, record } = await scaleModel(REPO, preset, {
    cacheDir: CACHE,
    externalData: argv.includes("--external-data"),
    golden: number("golden", preset.startsWith("tiny-") ? 1 : 0, 0),
    rebuild: argv.includes("--rebuild"),
  });
  log(`model ready after ${((performance.now() - buildStarted) / 1000).toFixed(0)} s: ${JSON.stringify(record.files)}`);
  const model = loadModelFolder(discoverModelFolders(modelsDir)[0] as string);
  const { manifest } = model;
  const T = number("ticks", manifest.ticks.trained);
  if (T > manifest.ticks.max) throw new Error(`--ticks must be at most ${manifest.ticks.max} for this model, got ${T}`);
  const input = inputFor(manifest, model.dir);
  const out = product(manifest.output.shape);
  const stateFloats = manifest.state.reduce((s, t) => s + product(t.shape), 0);
  const contextFloats = manifest.context.reduce((s, t) => s + product(t.shape), 0);
  const bytes = {
    statePerRequest: 4 * stateFloats,
    contextPerRequest: 4 * contextFloats,
    /** What CtmBatch holds per active row: context, state twice (in and out), outputs. */
    batchBuffersPerRequest: 4 * (contextFloats + 2 * stateFloats + 2 * out + 1),
    /** Main -> worker at admission (transferred), worker -> main at the answer (transferred). */
    admitMessage: 4 * product(manifest.input.shape),
    answerMessage: 4 * 2 * out,
    /** Copied into and out of the batch when a request joins and leaves (once each), never per tick. */
    joinCopy: 4 * (contextFloats + stateFloats),
  };

  const requestFor = (ticks: number): ClassifyRequestMessage => ({
    model: manifest.name,
    tensor: { shape: manifest.input.shape, values: Array.from(input) },
    halt_policy: { min_ticks: ticks, max_ticks: ticks },
  });
  const classifyMethod = loadProtocol().ctmService.Classify;
  if (!classifyMethod) throw new Error("ctm.v1.CtmService has no Classify method. This is a bug.");
  const requestFile = (ticks: number) => {
    const file = join(OUT, `request-${ticks}.bin`);
    writeFileSync(file, classifyMethod.requestSerialize(requestFor(ticks)));
    return file;
  };

  log(`starting the server twice (--max-batch ${MAX_BATCH}, then 1)`);
  const flags = [...serverFlags, "--models-dir", modelsDir];
  const batched = await startServerProcess(REPO, [...flags, "--max-batch", String(MAX_BATCH)]);
  const batchedStartMiB = residentMiB(batched.pid);
  log(
    `--max-batch ${MAX_BATCH}: serving after ${(batched.startUpMs / 1000).toFixed(1)} s, ${batchedStartMiB.toFixed(0)} MiB`,
  );
  const unbatched = await startServerProcess(REPO, [...flags, "--max-batch", "1"]);
  const unbatchedStartMiB = residentMiB(unbatched.pid);
  log(`--max-batch 1: serving after ${(unbatched.startUpMs / 1000).toFixed(1)} s, ${unbatchedStartMiB.toFixed(0)} MiB`);
  const client = createCtmClient(`127.0.0.1:${batched.port}`, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": 64 << 20,
  });
  const classify = (request: ClassifyRequestMessage) => client.Classify(request);

  try {
    log("graph runs by batch size, in this process");
    const graphs = await measureGraphs(
      model,
      { provider: PROVIDER === "cuda" ? "cuda" : "cpu", threads: machine.threads },
      input,
      {
        tickRows: BATCHES,
        encoderRows: ENCODER_BATCHES,
        tickRepeats: TICK_REPEATS,
        encoderRepeats: ENCODER_REPEATS,
      },
    );

    // Progress as it comes, so that a run that cannot finish still shows how far it got.
    const runs = (list: { rows: number; ms: number }[]) =>
      list.map((g) => `${g.rows}: ${g.ms.toFixed(2)} ms`).join(", ");
    log(`session open ${graphs.openMs.toFixed(0)} ms; encoder ${runs(graphs.encoder)}`);
    log(`tick ${runs(graphs.tick)}; resident ${graphs.tick.map((t) => t.residentMiB.toFixed(0)).join(", ")} MiB`);
    log(`the scheduler alone, in this process: 1 row x ${REQUESTS} requests, ${SCHEDULER_ROWS} rows x 1 wave`);
    const settings = { provider: PROVIDER === "cuda" ? "cuda" : "cpu", threads: machine.threads } as const;
    const schedulerOverhead = [
      await measureSchedulerOverhead(model, settings, input, { rows: 1, waves: REQUESTS, ticks: T }),
      await measureSchedulerOverhead(model, settings, input, { rows: SCHEDULER_ROWS, waves: 1, ticks: T }),
    ];
    for (const o of schedulerOverhead)
      log(
        `scheduler, ${o.rows} row(s): ${o.outsidePerTickMs.toFixed(3)} ms outside per ${o.tickRunMs.toFixed(2)} ms tick`,
      );

    // The served answer against PyTorch's at the tick the server answered from, every position.
    let golden: { checked: boolean; topClassMatches?: boolean; probabilityError?: number } = { checked: false };
    if (manifest.golden) {
      const doc = JSON.parse(readFileSync(join(model.dir, manifest.golden), "utf8")) as {
        ticks: number;
        cases: { probabilities: number[][] }[];
      };
      const answer = await classify(requestFor(doc.ticks));
      const expected = doc.cases[0]?.probabilities[answer.answer_tick - 1] ?? [];
      const classes = manifest.output.labels.length;
      const served = answer.positions.length > 0 ? answer.positions : answer.top_k.slice(0, 1);
      golden = { checked: true, topClassMatches: served.length === expected.length / classes, probabilityError: 0 };
      served.forEach((p, position) => {
        const row = expected.slice(position * classes, (position + 1) * classes);
        const best = row.indexOf(Math.max(...row));
        if (p.index !== best) golden.topClassMatches = false;
        golden.probabilityError = Math.max(
          golden.probabilityError ?? 0,
          Math.abs(p.probability - (row[best] as number)),
        );
      });
    }

    log(`a lone request against ticks run (${REQUESTS} per point)`);
    const tickPoints = [
      ...new Set(Array.from({ length: TICK_POINTS }, (_, i) => Math.round(1 + ((T - 1) * i) / (TICK_POINTS - 1)))),
    ];
    await classify(requestFor(T)); // the first request of a process JITs the hot paths
    const lone = new Map<number, number[]>(tickPoints.map((k) => [k, []]));
    const loneBefore = await serverTimes(batched);
    for (let r = 0; r < REQUESTS; r++) {
      for (const k of tickPoints) {
        const started = performance.now();
        const answer = await classify(requestFor(k));
        lone.get(k)?.push(performance.now() - started);
        if (answer.ticks_used !== k) throw new Error(`asked for ${k} ticks, the server ran ${answer.ticks_used}`);
      }
    }
    const loneOutside = outside(loneBefore, await serverTimes(batched));
    log(`lone: ${[...lone].map(([k, ms]) => `${k} ticks ${median(ms).toFixed(1)} ms`).join(", ")}`);
    const lonePoints = tickPoints.map((k) => ({ ticks: k, medianMs: median(lone.get(k) ?? []), ms: lone.get(k) }));
    const loneFit = linearFit(lonePoints.flatMap((p) => (p.ms ?? []).map((ms): [number, number] => [p.ticks, ms])));
    const tick1 = graphs.tick.find((t) => t.rows === 1)?.ms ?? Number.NaN;
    const encoder1 = graphs.encoder.find((e) => e.rows === 1)?.ms ?? Number.NaN;

    /**
     * `callers` closed-loop callers for a warm-up and a window. Two rates: answers counted in the
     * window, and request-ticks per second over the same window divided by the ticks per request
     * (every request runs exactly that many), which counts partial progress and so is not quantised
     * by whole waves of answers when a request takes seconds. The server's metrics are scraped at the
     * window's edges, as the load generator reports them.
     */
    const saturate = async (server: StartedServer, callers: number, ticks: number) => {
      const file = requestFile(ticks);
      const args = ["--import", "tsx", "server/bench/children/windowedLoad.ts", String(server.port), String(callers)];
      const child = spawn(process.execPath, [...args, String(WARM_UP), String(SECONDS), file], {
        cwd: REPO,
        stdio: ["ignore", "pipe", "inherit"],
      });
      const lines: string[] = [];
      let window: Promise<[Times, Times]> | undefined;
      const exited = new Promise<number>((resolve) => child.once("close", (code) => resolve(code ?? 1)));
      let buffered = "";
      child.stdout.on("data", (chunk: Buffer) => {
        buffered += chunk.toString();
        const parts = buffered.split("\n");
        buffered = parts.pop() ?? "";
        for (const line of parts) {
          lines.push(line);
          if (line.includes('"started"'))
            window = (async () => {
              await sleep(WARM_UP * 1000);
              const from = await serverTimes(server);
              await sleep(SECONDS * 1000);
              return [from, await serverTimes(server)];
            })();
        }
      });
      if ((await exited) !== 0 || !window) throw new Error(`the load generator failed (${callers} callers)`);
      const [from, to] = await window;
      const result = JSON.parse(lines[lines.length - 1] as string) as {
        completed: number;
        seconds: number;
        errors: number;
      };
      if (result.errors > 0) throw new Error(`${result.errors} requests failed under load (${callers} callers)`);
      return {
        rps: result.completed / result.seconds,
        completed: result.completed,
        tickRps: (to.tickRows - from.tickRows) / SECONDS / ticks,
        ...outside(from, to),
      };
    };

    log(`throughput against concurrency ${CONCURRENCY.join(",")}, ${SECONDS} s each after ${WARM_UP} s`);
    const throughput = [];
    for (const callers of CONCURRENCY) {
      const on = await saturate(batched, callers, T);
      const off = await saturate(unbatched, callers, T);
      throughput.push({ callers, batched: on, unbatched: off, speedup: on.tickRps / off.tickRps });
      log(`${callers} callers: ${on.tickRps.toFixed(2)} vs ${off.tickRps.toFixed(2)} answers/s (from request-ticks)`);
    }

    log(`early exit: ${EARLY_EXIT_CALLERS} callers halting after T/4, T/2, T ticks`);
    const nearest = <R extends { rows: number }>(runs: R[], rows: number) =>
      runs.reduce((best, r) => (Math.abs(r.rows - rows) < Math.abs(best.rows - rows) ? r : best));
    const rows = Math.min(EARLY_EXIT_CALLERS, MAX_BATCH);
    const tickRow = nearest(graphs.tick, rows).perRowMs;
    const encoderRow = nearest(graphs.encoder, rows).perRowMs;
    const predictedMs = (k: number) => encoderRow + k * tickRow;
    const earlyExit = [];
    for (const k of [...new Set([Math.max(1, Math.round(T / 4)), Math.max(1, Math.round(T / 2)), T])]) {
      const result = await saturate(batched, EARLY_EXIT_CALLERS, k);
      log(`${k} ticks: ${result.tickRps.toFixed(2)} answers/s (${result.completed} counted)`);
      earlyExit.push({
        ticks: k,
        rps: result.rps,
        tickRps: result.tickRps,
        completed: result.completed,
        predictedRps: 1000 / predictedMs(k),
      });
    }
    const full = earlyExit[earlyExit.length - 1] as (typeof earlyExit)[number];
    const earlyExitRows = earlyExit.map((e) => ({
      ...e,
      payoff: e.tickRps / full.tickRps,
      countedPayoff: e.rps / full.rps,
      predictedPayoff: predictedMs(T) / predictedMs(e.ticks),
    }));

    const batchedEndMiB = residentMiB(batched.pid);
    const unbatchedEndMiB = residentMiB(unbatched.pid);
    // onnxruntime's intermediates per row (measured) + the batch's buffers per row (exact).
    const memoryPerRequestMiB = graphs.memory.slope + mib(bytes.batchBuffersPerRequest);
    const results = {
      date: new Date().toISOString(),
      preset,
      command: `npm run bench:scale -- ${argv.join(" ")}`,
      machine: { ...machine, loadAverageAtEnd: loadAverage() },
      model: {
        name: manifest.name,
        parameters: record.parameters,
        architecture: record.architecture,
        ticksTrained: manifest.ticks.trained,
        ticksPerRequest: T,
      },
      export: {
        seconds: record.export_seconds,
        buildSeconds: record.build_seconds,
        wallSeconds: record.wallSeconds,
        cached: record.cached,
        exportedAt: record.exportedAt,
        files: record.files,
        externalData: Object.keys(record.files).some((f) => f.endsWith(".data")),
      },
      bytes,
      startUp: {
        batched: {
          maxBatch: MAX_BATCH,
          ms: batched.startUpMs,
          residentMiB: batchedStartMiB,
          residentAfterLoadMiB: batchedEndMiB,
        },
        unbatched: {
          maxBatch: 1,
          ms: unbatched.startUpMs,
          residentMiB: unbatchedStartMiB,
          residentAfterLoadMiB: unbatchedEndMiB,
        },
        sessionOpenMs: graphs.openMs,
      },
      graphs,
      schedulerOverhead,
      memory: {
        perActiveRequestMiB: memoryPerRequestMiB,
        onnxruntimePerRowMiB: graphs.memory.slope,
        baseMiB: graphs.memory.intercept,
        r2: graphs.memory.r2,
        largestMaxBatchIn24GiB: Math.floor((GIB24_MIB - graphs.memory.intercept) / memoryPerRequestMiB),
      },
      golden,
      lone: {
        points: lonePoints,
        fit: loneFit,
        graphsPredictMs: { intercept: encoder1, slope: tick1 },
        outsideOnnxruntime: loneOutside,
      },
      throughput,
      earlyExit: { callers: EARLY_EXIT_CALLERS, rows: earlyExitRows },
      settings: {
        requests: REQUESTS,
        tickPoints,
        seconds: SECONDS,
        warmUp: WARM_UP,
        concurrency: CONCURRENCY,
        batches: BATCHES,
        encoderBatches: ENCODER_BATCHES,
        maxBatch: MAX_BATCH,
      },
    };
    writeFileSync(join(OUT, "scale.json"), `${JSON.stringify(results, null, 2)}\n`);
    const plot = await writeScalePlots(results, join(OUT, "scale.png"));
    console.log(table(results));
    log(`results written to ${join(OUT, "scale.json")} and ${plot}`);
  } finally {
    client.close();
    await Promise.all([batched.stop(), unbatched.stop()]);
  }
}

export type ScaleResults = {
  preset: string;
  model: { parameters: number; ticksPerRequest: number };
  export: {
    seconds: number;
    buildSeconds: number;
    wallSeconds?: number;
    cached: boolean;
    files: Record<string, number>;
    externalData: boolean;
  };
  bytes: {
    [K in
      | "statePerRequest"
      | "contextPerRequest"
      | "batchBuffersPerRequest"
      | "admitMessage"
      | "answerMessage"
      | "joinCopy"]: number;
  };
  startUp: {
    batched: { maxBatch: number; ms: number; residentMiB: number; residentAfterLoadMiB: number };
    unbatched: { maxBatch: number; ms: number; residentMiB: number; residentAfterLoadMiB: number };
  };
  graphs: Awaited<ReturnType<typeof measureGraphs>>;
  schedulerOverhead: Awaited<ReturnType<typeof measureSchedulerOverhead>>[];
  memory: {
    perActiveRequestMiB: number;
    onnxruntimePerRowMiB: number;
    baseMiB: number;
    r2: number;
    largestMaxBatchIn24GiB: number;
  };
  golden: { checked: boolean; topClassMatches?: boolean; probabilityError?: number };
  lone: {
    points: { ticks: number; medianMs: number }[];
    fit: { slope: number; intercept: number; r2: number };
    graphsPredictMs: { intercept: number; slope: number };
    outsideOnnxruntime: ReturnType<typeof outside>;
  };
  throughput: {
    callers: number;
    batched: { rps: number; tickRps: number } & ReturnType<typeof outside>;
    unbatched: { rps: number; tickRps: number } & ReturnType<typeof outside>;
    speedup: number;
  }[];
  earlyExit: {
    callers: number;
    rows: {
      ticks: number;
      rps: number;
      tickRps: number;
      payoff: number;
      countedPayoff: number;
      predictedPayoff: number;
    }[];
  };
};

function table(r: ScaleResults): string {
  const f = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : "n/a");
  const pct = (n: number) => `${f(100 * n, 1)}%`;
  const files = Object.entries(r.export.files)
    .filter(([name]) => name.includes(".onnx"))
    .map(([name, size]) => `${name} ${f(mib(size), 1)} MiB`)
    .join(", ");
  const lines = [
    `| ${r.preset}: ${(r.model.parameters / 1e6).toFixed(1)}M parameters, ${r.model.ticksPerRequest} ticks per request | result |`,
    "|---|---|",
    `| export (${r.export.cached ? "cached; measured when built" : "this run"}): graphs written and checked; building the random model; the whole python process | ${f(r.export.seconds, 1)} s; ${f(r.export.buildSeconds, 1)} s; ${r.export.wallSeconds === undefined ? "n/a" : `${f(r.export.wallSeconds, 1)} s`} |`,
    `| graph files${r.export.externalData ? " (external data)" : ""} | ${files} |`,
    `| start-up, --max-batch ${r.startUp.batched.maxBatch} / 1 (spawn to serving) | ${f(r.startUp.batched.ms / 1000, 1)} s / ${f(r.startUp.unbatched.ms / 1000, 1)} s |`,
    `| server RSS after start-up, --max-batch ${r.startUp.batched.maxBatch} / 1 | ${f(r.startUp.batched.residentMiB, 0)} / ${f(r.startUp.unbatched.residentMiB, 0)} MiB |`,
    `| server RSS after the load, --max-batch ${r.startUp.batched.maxBatch} / 1 | ${f(r.startUp.batched.residentAfterLoadMiB, 0)} / ${f(r.startUp.unbatched.residentAfterLoadMiB, 0)} MiB |`,
    `| state per request (carried tick to tick) / K,V context / batch buffers held | ${f(r.bytes.statePerRequest / 1024, 1)} / ${f(r.bytes.contextPerRequest / 1024, 1)} / ${f(r.bytes.batchBuffersPerRequest / 1024, 1)} KiB |`,
    `| messages per request: input in / answer out (both transferred, not copied) | ${f(r.bytes.admitMessage / 1024, 1)} / ${f(r.bytes.answerMessage / 1024, 1)} KiB |`,
    ...r.graphs.encoder.map(
      (e) =>
        `| encoder run, batch ${e.rows} (per row); resident after it | ${f(e.ms)} ms (${f(e.perRowMs)} ms); ${f(e.residentMiB, 0)} MiB |`,
    ),
    ...r.graphs.tick.map((t) => `| tick run, batch ${t.rows} (per row) | ${f(t.ms)} ms (${f(t.perRowMs, 3)} ms) |`),
    `| memory per active request: batch buffers (exact) + onnxruntime per row (RSS slope over tick batch sizes, R^2) | ${f(r.memory.perActiveRequestMiB, 2)} MiB = ${f(mib(r.bytes.batchBuffersPerRequest), 2)} + ${f(r.memory.onnxruntimePerRowMiB, 2)} (${f(r.memory.r2, 3)}) |`,
    `| largest --max-batch within 24 GiB (from ${f(r.memory.baseMiB, 0)} MiB base) | ${r.memory.largestMaxBatchIn24GiB} |`,
    ...(r.golden.checked
      ? [
          `| served answer vs PyTorch (top class, probability error) | ${r.golden.topClassMatches ? "same" : "DIFFERENT"}, ${r.golden.probabilityError?.toExponential(1)} |`,
        ]
      : []),
    ...r.lone.points.map((p) => `| lone request, ${p.ticks} ticks (median) | ${f(p.medianMs)} ms |`),
    `| lone latency = intercept + slope x ticks (R^2) | ${f(r.lone.fit.intercept)} + ${f(r.lone.fit.slope, 3)} x ticks (${f(r.lone.fit.r2, 4)}) |`,
    `| the graphs alone predict (encoder batch 1 + tick batch 1 x ticks) | ${f(r.lone.graphsPredictMs.intercept)} + ${f(r.lone.graphsPredictMs.slope, 3)} x ticks |`,
    ...r.schedulerOverhead.map(
      (o) =>
        `| scheduler alone (in process), ${o.rows} row(s): time outside onnxruntime, share of tick runs (per tick) | ${pct(o.shareOfTickRuns)} (${f(o.outsidePerTickMs, 3)} ms of ${f(o.tickRunMs, 2)} ms) |`,
    ),
    `| server worker, lone requests: time outside onnxruntime, share of tick runs (per tick) | ${pct(r.lone.outsideOnnxruntime.shareOfTickRuns)} (${f(r.lone.outsideOnnxruntime.perTickMs, 3)} ms) |`,
    ...r.throughput.map(
      (t) =>
        `| ${t.callers} callers: answers/s from request-ticks (counted) batched / unbatched, speed-up; outside onnxruntime batched / unbatched; mean batch | ${f(t.batched.tickRps)} (${f(t.batched.rps)}) / ${f(t.unbatched.tickRps)} (${f(t.unbatched.rps)}), ${f(t.speedup)}x; ${pct(t.batched.shareOfTickRuns)} / ${pct(t.unbatched.shareOfTickRuns)}; ${f(t.batched.meanBatch, 1)} |`,
    ),
    ...r.earlyExit.rows.map(
      (e) =>
        `| early exit, ${r.earlyExit.callers} callers halting after ${e.ticks} ticks: answers/s from request-ticks (counted), payoff (counted; graphs predict) | ${f(e.tickRps)} (${f(e.rps)}), ${f(e.payoff)}x (${f(e.countedPayoff)}x; ${f(e.predictedPayoff)}x) |`,
    ),
  ];
  return lines.join("\n");
}

try {
  await main();
} catch (error) {
  console.error(error);
  process.exit(1); // the "exit" handlers stop the servers
}
