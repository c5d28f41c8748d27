/**
 * `npm run bench`: the targets of docs/benchmarks.md (issue 13), each measured side by side in one run
 * and printed beside its target.
 *
 *   1. images: throughput at 64 callers sending a PNG against the same digit as a raw tensor;
 *   2. payoff: at 64 callers sending PNGs of the model's samples, throughput at certainty threshold t
 *      over throughput at 1.0, against the ratio the graphs' own costs in that run predict (encoder
 *      plus ticks, per answered request, at the batch sizes the server formed);
 *   3. a lone request, every tick: the server end to end against a bare in-process loop over the same
 *      graphs plus a compute-free gRPC round trip; and that Node loop against Python onnxruntime's;
 *   4. grpc.health.v1 Check p99, probed from this process while the server is saturated, against the
 *      same probe to a control that sits idle meanwhile: on the server's health port (--health-port,
 *      its own thread; what the deployment's probes call), and for the record on its gRPC port.
 *
 * The control is the thinnest gRPC server over the same graphs (thinServer.ts: the bare loop on its
 * event loop, nothing else), in its own process: what gRPC on this machine costs any grpc-js server.
 * Measurements alternate in rounds so that a change in background load hits both sides alike.
 *
 *   npm run bench -- [--rounds 3] [--requests 30] [--seconds 6] [--callers 64] [--threads N]
 *                    [--worker-nice N] [--out out/bench.json]
 *
 * --threads and --worker-nice go to both servers; without them the servers use their defaults. The
 * bare loops (Node and Python) always get the intra-op thread count the servers run with.
 */
import { execFile, spawn } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import {
  createCtmClient,
  createHealthClient,
  freePort,
  type StartedServer,
  startServerProcess,
} from "../../../tools/harness/index.ts";
import { type Histogram, latencyHistogram, msAtPercentile } from "../../../tools/harness/latencyHistogram.ts";
import { loadAverage, machineRecord } from "../../../tools/harness/machine.ts";
import { mean, percentile, sum } from "../../../tools/harness/statistics.ts";
import { parseConfig } from "../../src/config.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import { type ClassifyRequestMessage, loadProtocol } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { benchModelFolder } from "../parts/benchModel.ts";
import { BENCH_USAGE, type BenchOptions, BenchUsageError, parseBenchOptions } from "../parts/benchOptions.ts";
import { type GraphCosts, graphRun, measureGraphCosts, predictedMsPerAnswer } from "../parts/graphCostModel.ts";
import { readServerCounters, type ServerCounters } from "../parts/serverCounters.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

let options: BenchOptions;
try {
  const parsed = parseBenchOptions(process.argv.slice(2));
  if (parsed === "help") {
    console.log(BENCH_USAGE);
    process.exit(0);
  }
  options = parsed;
} catch (error) {
  if (!(error instanceof BenchUsageError)) throw error;
  console.error(`bench: ${error.message}\n\n${BENCH_USAGE}`);
  process.exit(2);
}
const OUT = resolve(REPO, options.out);
const ROUNDS = options.rounds;
const REQUESTS = options.requests;
const SECONDS = options.seconds;
const CALLERS = options.callers;
const WARM_UP_SECONDS = 4;
/** Each load runs in phases of about this many seconds, interleaved with the others. */
const SLICE_SECONDS = 2;
/** Passed to both servers when given; otherwise they use their defaults, and so does the bare loop. */
const THREADS_FLAG = options.threads === undefined ? [] : ["--threads", String(options.threads)];
/** Passed to both servers; -1 leaves the server's default. */
const WORKER_NICE = options.workerNice ?? -1;
const SERVER_FLAGS = ["--provider", "cpu", ...THREADS_FLAG];
if (WORKER_NICE >= 0) SERVER_FLAGS.push("--worker-nice", String(WORKER_NICE));
// What the servers will run with, resolved as they resolve it (they inherit this environment), so
// that the bare loop gets the same intra-op thread count.
const serverConfig = parseConfig(SERVER_FLAGS, process.env);
if (serverConfig === "help") throw new Error("the server flags asked for help. This is a bug.");
const THREADS = serverConfig.threads;
const NICENESS = serverConfig.workerNice;

// ---------------------------------------------------------------- inputs
const model = loadModelFolder(benchModelFolder(REPO));
const { manifest } = model;
const ticks = manifest.ticks.trained;
const size = manifest.input.shape.reduce((a, b) => a * b, 1);
type GoldenCase = { input: number[]; sample?: string };
const golden = manifest.golden
  ? (JSON.parse(readFileSync(join(model.dir, manifest.golden), "utf8")) as { cases: GoldenCase[] })
  : undefined;
const input = Float32Array.from(golden?.cases[0]?.input ?? new Array(size).fill(0));
const everyTick = { min_ticks: ticks, max_ticks: ticks };
const request: ClassifyRequestMessage = {
  model: manifest.name,
  tensor: { shape: manifest.input.shape, values: Array.from(input) },
  halt_policy: everyTick,
};
/** The model's sample images; the first golden case's own image comes first (the tensor above). */
const labelsFile = manifest.samples ? join(model.dir, manifest.samples) : undefined;
const sampleFiles = labelsFile
  ? (JSON.parse(readFileSync(labelsFile, "utf8")) as { file: string }[]).map((s) => join(dirname(labelsFile), s.file))
  : [];
const goldenSample = golden?.cases[0]?.sample;
if (goldenSample) sampleFiles.unshift(join(model.dir, goldenSample));
// The golden image once, at the head of the list.
const uniqueFiles = [...new Set(sampleFiles)];
const pngs = uniqueFiles.slice(0, 64).map((file) => readFileSync(file));
if (pngs.length === 0) throw new Error(`model ${manifest.name} ships no sample images to send as PNGs`);
/** Certainty thresholds of benchmark 2; 1 is the baseline every other is divided by. */
const THRESHOLDS = [1, 0.9, 0.5];

const run = promisify(execFile);
const classifyMethod = loadProtocol().ctmService.Classify;
if (!classifyMethod) throw new Error("ctm.v1.CtmService has no Classify method. This is a bug.");
const serialize: (message: object) => Buffer = classifyMethod.requestSerialize;
/** Requests for the load generator, each after its length (loadGenerator.ts). */
function requestFile(name: string, requests: object[]): string {
  const path = join(dirname(OUT), `bench-${name}.bin`);
  const parts = requests.flatMap((r) => {
    const body = serialize(r);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(body.length);
    return [length, body];
  });
  writeFileSync(path, Buffer.concat(parts));
  return path;
}

// ---------------------------------------------------------------- clients
/** Each client on its own connection (grpc-js would otherwise share one per target). */
const OWN_CONNECTION = { "grpc.use_local_subchannel_pool": 1 };

function ctmClient(port: number) {
  const client = createCtmClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), OWN_CONNECTION);
  return {
    classify: async () => void (await client.Classify(request)),
    /** A round trip that computes nothing: what gRPC alone costs here. */
    getModel: async () => void (await client.GetModel({ name: manifest.name })),
    close: () => client.close(),
  };
}

function healthClient(port: number) {
  const client = createHealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), OWN_CONNECTION);
  return {
    check: async () => void (await client.Check({ service: "" })),
    close: () => client.close(),
  };
}

// ---------------------------------------------------------------- statistics
const ms = (n: number) => `${n.toFixed(2)} ms`;
const x = (n: number) => `${n.toFixed(2)}x`;
const met = (ok: boolean) => (ok ? "**met**" : "**missed**");

async function timed(n: number, once: () => Promise<number>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await once());
  return out;
}

interface Phase {
  file: string;
  completed: number;
  seconds: number;
  errors: number;
  /** The load generator's own CPU time in the phase. */
  cpuMs: number;
  counters: ServerCounters;
}

/**
 * `CALLERS` concurrent loops of Classify from a separate process, in phases of `seconds` each, one per
 * requests file in turn; what each phase completed and what the server's counters moved by in it.
 */
async function saturate(server: StartedServer, phases: { file: string; seconds: number }[]): Promise<Phase[]> {
  const { stdout } = await run(
    process.execPath,
    [
      "--import",
      "tsx",
      "server/bench/children/loadGenerator.ts",
      String(server.port),
      String(CALLERS),
      String(server.metricsPort),
      ...phases.map((p) => `${p.seconds}:${p.file}`),
    ],
    { cwd: REPO, encoding: "utf8" },
  );
  const results = JSON.parse(stdout) as Phase[];
  const errors = sum(results.map((r) => r.errors));
  if (errors > 0) throw new Error(`${errors} requests failed under load`);
  return results;
}

/** Every phase of one load, pooled: throughput, ticks, batch sizes, graph time per answer. */
function pooled(phases: Phase[]) {
  const add = (key: keyof ServerCounters) => sum(phases.map((p) => p.counters[key]));
  const finished = add("finished");
  return {
    rps: sum(phases.map((p) => p.completed)) / sum(phases.map((p) => p.seconds)),
    perPhase: phases.map((p) => Number((p.completed / p.seconds).toFixed(0))),
    meanTicks: add("ticksUsed") / finished,
    encoderRowsPerRun: add("encoderRuns") > 0 ? finished / add("encoderRuns") : 0,
    tickRowsPerRun: add("tickRows") / add("tickRuns"),
    encoderMsPerAnswer: add("encoderMs") / finished,
    tickMsPerAnswer: add("tickMs") / finished,
    graphMsPerAnswer: (add("encoderMs") + add("tickMs")) / finished,
    /** CPU per answer: the whole server process, and the load generator (on the same cores). */
    serverCpuMsPerAnswer: add("cpuMs") / finished,
    clientCpuMsPerAnswer: sum(phases.map((p) => p.cpuMs)) / finished,
  };
}

const summary = (h: Histogram) => ({
  count: h.totalCount,
  p50: msAtPercentile(h, 50),
  p99: msAtPercentile(h, 99),
  max: h.maxValue / 1000,
});

/**
 * A bare loop over the same graphs in a process of its own, kept running (bareLoopProcess.ts for
 * Node, bare_loop.py for Python; same threads, no spinning): each `once()` runs one request there and
 * resolves with the milliseconds it measured. Its own process keeps it apart from the gRPC clients
 * that share this one's event loop.
 */
async function servedLoop(script: string[], flags: string[] = []) {
  const args = [...script, model.dir, ...flags, "--threads", String(THREADS), "--ticks", String(ticks)];
  const child = spawn(process.execPath, args, {
    cwd: REPO,
    stdio: ["pipe", "pipe", "inherit"],
  });
  process.once("exit", () => child.kill("SIGKILL"));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })[Symbol.asyncIterator]();
  const next = async () => {
    const line = await lines.next();
    if (line.done) throw new Error(`the bare loop (${args.join(" ")}) exited`);
    return line.value as string;
  };
  const { onnxruntime } = JSON.parse(await next()) as { onnxruntime: string };
  return {
    onnxruntime,
    once: async () => {
      child.stdin?.write("\n");
      return Number(await next());
    },
    close: () => child.stdin?.end(),
  };
}

// ---------------------------------------------------------------- run
async function main() {
  const machine = machineRecord();
  mkdirSync(dirname(OUT), { recursive: true });
  const tensorFile = requestFile("tensor", [request]);
  const pngFile = requestFile("png", [{ model: manifest.name, image: { data: pngs[0] }, halt_policy: everyTick }]);
  const thresholdFiles = THRESHOLDS.map((t) =>
    requestFile(
      `png-threshold-${t}`,
      pngs.map((data) => ({
        model: manifest.name,
        image: { data },
        halt_policy: { certainty_threshold: t, max_ticks: ticks },
      })),
    ),
  );
  console.error(
    `model ${manifest.name}/${manifest.version}, ${ticks} ticks; ${machine.cores} cores (${machine.cpu}); load ${machine.loadAverageAtStart}; ${THREADS} intra-op thread(s), worker nice ${NICENESS}`,
  );
  // The graphs' own costs by batch size, out of load, as the worker runs them: what the payoff of
  // early exit is predicted from (benchmark 2). Measured before and after the loads.
  const costsBefore = await measureGraphCosts(model, { threads: THREADS }, 30);
  const healthPort = await freePort();
  const server = await startServerProcess(REPO, [
    ...SERVER_FLAGS,
    "--max-batch",
    "64",
    "--max-queue",
    "1024",
    "--health-port",
    String(healthPort),
  ]);
  const thin = await startServerProcess(REPO, ["--threads", String(THREADS)], "server/bench/children/thinServer.ts");
  const bare = await servedLoop(["--import", "tsx", "server/bench/children/bareLoopProcess.ts"]);
  const batchLoop = await servedLoop(["--import", "tsx", "server/bench/children/bareLoopProcess.ts"], ["--batch"]);
  const python = await servedLoop(["scripts/py.mjs", "server/bench/children/bare_loop.py"], ["--serve"]);
  const client = ctmClient(server.port);
  const thinClient = ctmClient(thin.port);

  // Warm-up: first runs allocate arenas and JIT the hot paths on both sides.

  for (const c of [client, thinClient]) {
    await timed(10, async () => {
      const t0 = performance.now();
      await c.classify();
      return performance.now() - t0;
    });
  }
  // A second of load was not enough: the first measured round still ran 25% slower than the next two
  // (out/bench.json's perRound, 2026-11-29).
  await saturate(server, [{ file: pngFile, seconds: WARM_UP_SECONDS }]);

  const bareMs: number[] = [];
  const batchLoopMs: number[] = [];
  const pythonMs: number[] = [];
  const pythonVersion = python.onnxruntime;
  const serverMs: number[] = [];
  const thinMs: number[] = [];
  const rpcMs: number[] = [];
  const inside = { handlerMs: 0, tickMs: 0, encoderMs: 0 };
  const loads = [
    { name: "tensor", file: tensorFile },
    { name: "png", file: pngFile },
    ...THRESHOLDS.map((t, i) => ({ name: `threshold ${t}`, file: thresholdFiles[i] as string })),
  ];
  const phasesOf = new Map<string, Phase[]>(loads.map((l) => [l.file, []]));
  const histogram = latencyHistogram;
  const health = histogram();
  const idleHealth = histogram();
  const portHealth = histogram();
  const portIdleHealth = histogram();
  const thinHealth = histogram();
  const thinIdleHealth = histogram();
  for (let round = 1; round <= ROUNDS; round++) {
    console.error(`round ${round}/${ROUNDS}`);
    // The bare loops, the server and its control alternate request by request; the server's
    // counters over the same stretch say where its time went.
    const before = await readServerCounters(server.metricsPort);
    for (let i = 0; i < REQUESTS; i++) {
      bareMs.push(await bare.once());
      batchLoopMs.push(await batchLoop.once());
      pythonMs.push(await python.once());
      for (const [c, into] of [
        [client, serverMs],
        [thinClient, thinMs],
      ] as const) {
        const t0 = performance.now();
        await c.classify();
        into.push(performance.now() - t0);
      }
      const t0 = performance.now();
      await client.getModel();
      rpcMs.push(performance.now() - t0);
    }
    const after = await readServerCounters(server.metricsPort);
    for (const key of Object.keys(inside) as (keyof typeof inside)[]) inside[key] += after[key] - before[key];

    // The real server's (gRPC port, health port) and the control's health alternate, one probe every 5 ms.
    const prober = healthClient(server.port);
    const portProber = healthClient(healthPort);
    const thinProber = healthClient(thin.port);
    const probe = async (check: () => Promise<void>, into: Histogram) => {
      const t0 = performance.now();
      await check();
      into.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
      await new Promise((resolve) => setTimeout(resolve, 5));
    };
    for (let i = 0; i < REQUESTS * 3; i++) {
      await probe(prober.check, idleHealth);
      await probe(portProber.check, portIdleHealth);
      await probe(thinProber.check, thinIdleHealth);
    }
    let probing = true;
    const probes = (async () => {
      while (probing) {
        await probe(prober.check, health);
        await probe(portProber.check, portHealth);
        await probe(thinProber.check, thinHealth);
      }
    })();
    // Every load in short phases, interleaved and rotated each round, so that background load on a
    // shared machine hits them alike; the health probes run throughout.
    const slices = Math.max(1, Math.round(SECONDS / SLICE_SECONDS));
    const plan = Array.from({ length: slices }, (_, k) =>
      loads.map((_, i) => loads[(i + k + round) % loads.length] as (typeof loads)[number]),
    ).flat();
    const phases = await saturate(
      server,
      plan.map((l) => ({ file: l.file, seconds: SECONDS / slices })),
    );
    for (const p of phases) phasesOf.get(p.file)?.push(p);
    probing = false;
    await probes;
    prober.close();
    portProber.close();
    thinProber.close();
  }
  client.close();
  thinClient.close();
  for (const loop of [bare, batchLoop, python]) loop.close();
  await Promise.all([server.stop(), thin.stop()]);

  const costsAfter = await measureGraphCosts(model, { threads: THREADS }, 30);
  // The 10th percentile of both passes' runs: the cost when the graphs had the CPU, which a median
  // on a machine this loaded is not.
  const pick = (graph: "encoder" | "tick") =>
    costsBefore[graph].map((run, i) => {
      const both = [...(costsBefore.samples[i]?.[graph] ?? []), ...(costsAfter.samples[i]?.[graph] ?? [])];
      return graphRun(run.rows, percentile(both, 10), both.length);
    });
  const graphCosts: GraphCosts = { encoder: pick("encoder"), tick: pick("tick") };
  const tensor = pooled(phasesOf.get(tensorFile) as Phase[]);
  const png = pooled(phasesOf.get(pngFile) as Phase[]);
  const byThreshold = THRESHOLDS.map((t, i) => ({
    threshold: t,
    ...pooled(phasesOf.get(thresholdFiles[i] as string) as Phase[]),
  }));
  const baseline = byThreshold[0] as (typeof byThreshold)[number];
  const payoff = byThreshold.slice(1).map((p) => {
    const achieved = p.rps / baseline.rps;
    // The issue's prediction: the graphs' measured costs (out of load) at the batch sizes seen.
    const predicted = predictedMsPerAnswer(graphCosts, baseline) / predictedMsPerAnswer(graphCosts, p);
    // The same ratio from the graph time the server measured during the loads (contention included).
    const inRun = baseline.graphMsPerAnswer / p.graphMsPerAnswer;
    // What it would be if throughput followed all the CPU an answer costs on these two cores (server
    // process and load generator), not the graphs alone.
    const cpu = (q: typeof p) => q.serverCpuMsPerAnswer + q.clientCpuMsPerAnswer;
    const byCpu = cpu(baseline) / cpu(p);
    return { threshold: p.threshold, achieved, predicted, ofPredicted: achieved / predicted, inRun, byCpu };
  });
  const p50 = (v: number[]) => percentile(v, 50);
  const loneBudget = 1.3 * (p50(bareMs) + p50(rpcMs));
  const results = {
    date: new Date().toISOString(),
    machine: { ...machine, loadAverageAtEnd: loadAverage() },
    model: `${manifest.name}/${manifest.version}`,
    ticksPerRequest: ticks,
    settings: {
      rounds: ROUNDS,
      requestsPerRound: REQUESTS,
      secondsPerRound: SECONDS,
      callers: CALLERS,
      threads: THREADS,
      threadsSource: THREADS_FLAG.length > 0 ? "--threads" : "server default",
      workerNice: NICENESS,
      workerNiceSource: WORKER_NICE >= 0 ? "--worker-nice" : "server default",
      pngSamples: pngs.length,
    },
    images: {
      tensor,
      png,
      ratio: png.rps / tensor.rps,
      byCpu:
        (tensor.serverCpuMsPerAnswer + tensor.clientCpuMsPerAnswer) /
        (png.serverCpuMsPerAnswer + png.clientCpuMsPerAnswer),
      target: 0.85,
    },
    payoff: {
      // bench.json's shape of the costs, as before the costs had one type.
      graphCosts: {
        rows: graphCosts.tick.map((r) => r.rows),
        encoderMs: graphCosts.encoder.map((r) => r.ms),
        tickMs: graphCosts.tick.map((r) => r.ms),
      },
      byThreshold,
      payoff,
      target: 0.9,
    },
    latency: {
      bareMs: { p50: p50(bareMs), p90: percentile(bareMs, 90), mean: mean(bareMs) },
      batchLoopMs: { p50: p50(batchLoopMs), mean: mean(batchLoopMs) },
      pythonBareMs: {
        p50: p50(pythonMs),
        p90: percentile(pythonMs, 90),
        mean: mean(pythonMs),
        onnxruntime: pythonVersion,
      },
      nodeOverPython: p50(bareMs) / p50(pythonMs),
      serverMs: { p50: p50(serverMs), p90: percentile(serverMs, 90), mean: mean(serverMs) },
      thinServerMs: { p50: p50(thinMs), p90: percentile(thinMs, 90), mean: mean(thinMs) },
      getModelRoundTripMs: { p50: p50(rpcMs), mean: mean(rpcMs) },
      /** 1.3 x (bare loop p50 + compute-free round trip p50). */
      loneBudgetMs: loneBudget,
      serverOverBudget: p50(serverMs) / loneBudget,
      // Per request, as the server measured it: the handler from receipt to answer, and inside it
      // the graph runs (the rest is worker hand-offs and the scheduler).
      serverSideMs: {
        handler: inside.handlerMs / serverMs.length,
        tickRuns: inside.tickMs / serverMs.length,
        encoderRuns: inside.encoderMs / serverMs.length,
      },
    },
    healthMs: {
      /** The health port (--health-port): the target's. */
      saturated: summary(portHealth),
      idle: summary(portIdleHealth),
      /** The gRPC port, for the record: probes there queue behind the requests. */
      grpcPort: { saturated: summary(health), idle: summary(idleHealth) },
      thin: { saturated: summary(thinHealth), idle: summary(thinIdleHealth) },
      ratioP99: portHealth.getValueAtPercentile(99) / thinHealth.getValueAtPercentile(99),
      grpcPortRatioP99: health.getValueAtPercentile(99) / thinHealth.getValueAtPercentile(99),
      target: 1.5,
    },
  };
  writeFileSync(OUT, `${JSON.stringify(results, null, 2)}\n`);

  const { images, latency, healthMs } = results;
  const costLine = graphCosts.tick
    .map((tick, i) => `${tick.rows}: ${(graphCosts.encoder[i]?.ms ?? Number.NaN).toFixed(2)} / ${tick.ms.toFixed(2)}`)
    .join(", ");
  const rows = [
    `| 1. ${CALLERS} callers, raw tensor, ${ticks} ticks: answers/s (phases); CPU ms per answer, server / load generator | ${tensor.rps.toFixed(0)} (${tensor.perPhase.join(", ")}); ${tensor.serverCpuMsPerAnswer.toFixed(2)} / ${tensor.clientCpuMsPerAnswer.toFixed(2)} | | |`,
    `| 1. ${CALLERS} callers, PNG of the same digit, ${ticks} ticks: answers/s (phases); CPU ms per answer, server / load generator | ${png.rps.toFixed(0)} (${png.perPhase.join(", ")}); ${png.serverCpuMsPerAnswer.toFixed(2)} / ${png.clientCpuMsPerAnswer.toFixed(2)} | | |`,
    `| 1. PNG / raw tensor (what all CPU per answer predicts: tensor's / PNG's) | ${(100 * images.ratio).toFixed(1)}% (${(100 * images.byCpu).toFixed(1)}%) | >= 85% | ${met(images.ratio >= 0.85)} |`,
    ...byThreshold.map(
      (p) =>
        `| 2. ${CALLERS} callers, ${pngs.length} sample PNGs, threshold ${p.threshold}: answers/s (phases); mean ticks; rows per encoder / tick run; graph ms per answer (encoder + ticks); CPU ms per answer, server / load generator | ${p.rps.toFixed(0)} (${p.perPhase.join(", ")}); ${p.meanTicks.toFixed(2)}; ${p.encoderRowsPerRun.toFixed(1)} / ${p.tickRowsPerRun.toFixed(1)}; ${ms(p.graphMsPerAnswer)} (${p.encoderMsPerAnswer.toFixed(3)} + ${p.tickMsPerAnswer.toFixed(3)}); ${p.serverCpuMsPerAnswer.toFixed(2)} / ${p.clientCpuMsPerAnswer.toFixed(2)} | | |`,
    ),
    `| 2. graph runs out of load, rows: encoder / tick ms (10th percentile of 60 runs) | ${costLine} | | |`,
    ...payoff.map(
      (p) =>
        `| 2. payoff at ${p.threshold}: achieved throughput(${p.threshold}) / throughput(1); predicted by the graphs' costs at the batch sizes seen (by the server's in-run graph time; by all CPU per answer) | ${x(p.achieved)}; ${x(p.predicted)} (${x(p.inRun)}; ${x(p.byCpu)}); achieved = ${(100 * p.ofPredicted).toFixed(0)}% of predicted | >= 90% of predicted | ${met(p.ofPredicted >= 0.9)} |`,
    ),
    `| 3. lone request, ${ticks} ticks, raw tensor: server p50 (mean) | ${ms(latency.serverMs.p50)} (${ms(latency.serverMs.mean)}) | | |`,
    `| 3. bare Node loop p50; compute-free round trip (GetModel) p50; 1.3 x their sum | ${ms(latency.bareMs.p50)}; ${ms(latency.getModelRoundTripMs.p50)}; ${ms(loneBudget)} | | |`,
    `| 3. server p50 / (1.3 x (bare + round trip)) | ${x(latency.serverOverBudget)} | <= 1 | ${met(latency.serverOverBudget <= 1)} |`,
    `| 3. control (thinnest grpc-js server over the same graphs) p50 | ${ms(latency.thinServerMs.p50)} | | |`,
    `| 3. inside the server, per lone request (mean): handler / tick runs / encoder run | ${ms(latency.serverSideMs.handler)} / ${ms(latency.serverSideMs.tickRuns)} / ${ms(latency.serverSideMs.encoderRuns)} | | |`,
    `| 3. bare loop p50: Node (onnxruntime-node ${bare.onnxruntime.replace("node ", "")}) / Python (onnxruntime ${pythonVersion}) | ${ms(latency.bareMs.p50)} / ${ms(latency.pythonBareMs.p50)} = ${x(latency.nodeOverPython)} | <= 1.2x | ${met(latency.nodeOverPython <= 1.2)} |`,
    `| 3. the same request as the server's worker runs it (CtmBatch, one row), p50 | ${ms(latency.batchLoopMs.p50)} | | |`,
    `| 4. health Check p99 while saturated: server's health port / control (p50s; ${healthMs.saturated.count} checks each) | ${ms(healthMs.saturated.p99)} / ${ms(healthMs.thin.saturated.p99)} = ${x(healthMs.ratioP99)} (${ms(healthMs.saturated.p50)} / ${ms(healthMs.thin.saturated.p50)}) | <= 1.5x | ${met(healthMs.ratioP99 <= 1.5)} |`,
    `| 4. the same on the server's gRPC port / control (p50s) | ${ms(healthMs.grpcPort.saturated.p99)} / ${ms(healthMs.thin.saturated.p99)} = ${x(healthMs.grpcPortRatioP99)} (${ms(healthMs.grpcPort.saturated.p50)} / ${ms(healthMs.thin.saturated.p50)}) | | |`,
    `| 4. health Check p99 idle: server's health port / gRPC port / control | ${ms(healthMs.idle.p99)} / ${ms(healthMs.grpcPort.idle.p99)} / ${ms(healthMs.thin.idle.p99)} | | |`,
  ];
  console.log(["| measurement | result | target | |", "|---|---|---|---|", ...rows].join("\n"));
  console.error(
    `load average ${machine.loadAverageAtStart} at the start, ${results.machine.loadAverageAtEnd} at the end; results written to ${OUT}`,
  );
}

try {
  await main();
} catch (error) {
  console.error(error);
  process.exit(1); // the "exit" handlers stop the servers
}
