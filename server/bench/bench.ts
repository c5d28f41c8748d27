/**
 * `npm run bench`: the three measurements of docs/benchmarks.md, side by side in one run.
 *
 *   1. one request at a time, every tick: the server end to end (gRPC on loopback) against a bare
 *      in-process loop over the same ONNX graphs;
 *   2. throughput with many concurrent callers (a separate load-generator process): tick-level
 *      batching (--max-batch 64) against the same server with --max-batch 1;
 *   3. grpc.health.v1 Check latency, probed from this process, while the batching server is saturated
 *      (and, for reference, the same probe against the idle server: the floor on this machine).
 *
 * Both 1 and 3 are also measured against a control, the thinnest gRPC server over the same graphs
 * (thinServer.ts: the bare loop on its event loop, nothing else), in its own process: what gRPC on
 * this machine costs any grpc-js server, so that the real server's own share can be told apart.
 *
 * Every request runs every tick (min_ticks = max_ticks), so each one costs the same. Measurements
 * alternate in rounds so that a change in background load hits both sides of a comparison alike.
 *
 *   npm run bench -- [--rounds 3] [--requests 30] [--seconds 6] [--callers 64] [--threads N]
 *                    [--worker-nice N] [--out out/bench.json]
 *
 * --threads and --worker-nice go to both servers; without them the servers use their defaults. The
 * bare loop always gets the intra-op thread count the servers run with.
 */
import { execFile } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import * as hdr from "hdr-histogram-js";
import { parseConfig } from "../src/config.ts";
import { loadModelFolder } from "../src/model/modelFolder.ts";
import { type ClassifyRequestMessage, loadProtocol } from "../src/transport/protocol.ts";
import { openBareLoop } from "./bareLoop.ts";
import { benchModelFolder } from "./benchModel.ts";
import { startServerProcess } from "./serverProcess.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

function option(name: string, fallback: number, min = 1): number {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0) return fallback;
  const value = Number(process.argv[at + 1]);
  if (!Number.isFinite(value) || value < min) throw new Error(`--${name} needs a number >= ${min}`);
  return value;
}
const outAt = process.argv.indexOf("--out");
const OUT = resolve(REPO, outAt >= 0 ? (process.argv[outAt + 1] as string) : "out/bench.json");
const ROUNDS = option("rounds", 3);
const REQUESTS = option("requests", 30);
const SECONDS = option("seconds", 6);
const CALLERS = option("callers", 64);
const WARM_UP_SECONDS = 4;
/** Passed to both servers when given; otherwise they use their defaults, and so does the bare loop. */
const THREADS_FLAG = process.argv.includes("--threads") ? ["--threads", String(option("threads", 1))] : [];
/** Passed to both servers; -1 leaves the server's default. */
const WORKER_NICE = option("worker-nice", -1, -1);
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
const golden = manifest.golden
  ? (JSON.parse(readFileSync(join(model.dir, manifest.golden), "utf8")) as { cases: { input: number[] }[] })
  : undefined;
const input = Float32Array.from(golden?.cases[0]?.input ?? new Array(size).fill(0));
const request: ClassifyRequestMessage = {
  model: manifest.name,
  tensor: { shape: manifest.input.shape, values: Array.from(input) },
  halt_policy: { min_ticks: ticks, max_ticks: ticks },
};
const run = promisify(execFile);
/** The same request, serialised once for the load generator. */
const REQUEST_FILE = join(dirname(OUT), "bench-request.bin");
const classifyMethod = loadProtocol().ctmService.Classify;
if (!classifyMethod) throw new Error("ctm.v1.CtmService has no Classify method. This is a bug.");
const serialize: (message: object) => Buffer = classifyMethod.requestSerialize;

// ---------------------------------------------------------------- clients
type Unary = (request: object, callback: (error: grpc.ServiceError | null, response: unknown) => void) => void;

/** A client on its own connection (grpc-js would otherwise share one per target). */
function ctmClient(port: number) {
  const { CtmClient } = loadProtocol();
  const client = new CtmClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
  });
  const classify = (client as unknown as { Classify: Unary }).Classify.bind(client);
  const getModel = (client as unknown as { GetModel: Unary }).GetModel.bind(client);
  return {
    classify: () => new Promise<void>((ok, fail) => classify(request, (error) => (error ? fail(error) : ok()))),
    /** A round trip that computes nothing: what gRPC alone costs here. */
    getModel: () =>
      new Promise<void>((ok, fail) => getModel({ name: manifest.name }, (error) => (error ? fail(error) : ok()))),
    close: () => client.close(),
  };
}

function healthClient(port: number) {
  const Health = grpc.makeGenericClientConstructor(healthService, "Health");
  const client = new Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    "grpc.use_local_subchannel_pool": 1,
  });
  const check = (client as unknown as { check: Unary }).check.bind(client);
  return {
    check: () => new Promise<void>((ok, fail) => check({ service: "" }, (error) => (error ? fail(error) : ok()))),
    close: () => client.close(),
  };
}

// ---------------------------------------------------------------- statistics
const sorted = (values: number[]) => [...values].sort((a, b) => a - b);
const percentile = (values: number[], p: number) =>
  sorted(values)[Math.min(values.length - 1, Math.floor((p / 100) * values.length))] as number;
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
const ms = (n: number) => `${n.toFixed(2)} ms`;

async function timed(n: number, once: () => Promise<number>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await once());
  return out;
}

/** `callers` concurrent loops of Classify for `seconds`, from a separate process; requests per second. */
async function saturate(port: number, callers: number, seconds: number): Promise<number> {
  const { stdout } = await run(
    process.execPath,
    ["--import", "tsx", "server/bench/loadGenerator.ts", String(port), String(callers), String(seconds), REQUEST_FILE],
    { cwd: REPO, encoding: "utf8" },
  );
  const result = JSON.parse(stdout) as { completed: number; seconds: number; errors: number };
  if (result.errors > 0) throw new Error(`${result.errors} requests failed under load`);
  return result.completed / result.seconds;
}

/** The server's own account of where time went: sums of its histograms, in milliseconds. */
async function serverTimes(metricsPort: number) {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const sum = (name: string, method?: string) =>
    text
      .split("\n")
      .filter((line) => line.startsWith(`${name}{`) && (!method || line.includes(`method="${method}"`)))
      .reduce((total, line) => total + Number(line.split(" ").pop()), 0) * 1000;
  return {
    handler: sum("ctm_request_duration_seconds_sum", "Classify"),
    tickRuns: sum("ctm_tick_run_seconds_sum"),
    encoderRuns: sum("ctm_encoder_run_seconds_sum"),
    // Counts, not milliseconds.
    requests: sum("ctm_request_duration_seconds_count", "Classify") / 1000,
  };
}

/**
 * Graph time per request while saturating: what the worker spent in onnxruntime for each answered
 * request. Unlike requests per second it does not depend on how much CPU the load generator and
 * other processes leave the server, so it isolates what batching saves.
 */
async function graphMsPerRequest(metricsPort: number, load: () => Promise<number>): Promise<[number, number]> {
  const before = await serverTimes(metricsPort);
  const rps = await load();
  const after = await serverTimes(metricsPort);
  const graph = after.tickRuns - before.tickRuns + (after.encoderRuns - before.encoderRuns);
  return [rps, graph / (after.requests - before.requests)];
}

const summary = (h: hdr.Histogram) => ({
  count: h.totalCount,
  p50: h.getValueAtPercentile(50) / 1000,
  p99: h.getValueAtPercentile(99) / 1000,
  max: h.maxValue / 1000,
});

// ---------------------------------------------------------------- run
async function main() {
  const machine = {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    loadAverageAtStart: loadavg().map((l) => Number(l.toFixed(2))),
  };
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(REQUEST_FILE, serialize(request));
  console.error(
    `model ${manifest.name}/${manifest.version}, ${ticks} ticks per request; ${machine.cores} cores (${machine.cpu}); load ${machine.loadAverageAtStart}; ${THREADS} intra-op thread(s), worker nice ${NICENESS}`,
  );
  const batched = await startServerProcess(REPO, [...SERVER_FLAGS, "--max-batch", "64", "--max-queue", "1024"]);
  const unbatched = await startServerProcess(REPO, [...SERVER_FLAGS, "--max-batch", "1", "--max-queue", "1024"]);
  const thin = await startServerProcess(REPO, ["--threads", String(THREADS)], "server/bench/thinServer.ts");
  const bare = await openBareLoop(model, THREADS);
  const client = ctmClient(batched.port);
  const thinClient = ctmClient(thin.port);

  // Warm-up: first runs allocate arenas and JIT the hot paths on both sides.
  await timed(10, () => bare.run(input, ticks));
  for (const c of [client, thinClient]) {
    await timed(10, async () => {
      const t0 = performance.now();
      await c.classify();
      return performance.now() - t0;
    });
  }
  // A second of load was not enough: the first measured round still ran 25% slower than the next two
  // (out/bench.json's perRound, 2026-11-29), on both servers.
  await saturate(batched.port, CALLERS, WARM_UP_SECONDS);
  await saturate(unbatched.port, CALLERS, WARM_UP_SECONDS);

  const bareMs: number[] = [];
  const serverMs: number[] = [];
  const thinMs: number[] = [];
  const rpcMs: number[] = [];
  const inside = { handler: 0, tickRuns: 0, encoderRuns: 0 };
  const batchedRps: number[] = [];
  const unbatchedRps: number[] = [];
  const batchedGraphMs: number[] = [];
  const unbatchedGraphMs: number[] = [];
  const histogram = () =>
    hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const health = histogram();
  const idleHealth = histogram();
  const thinHealth = histogram();
  const thinIdleHealth = histogram();
  for (let round = 1; round <= ROUNDS; round++) {
    console.error(`round ${round}/${ROUNDS}`);
    bareMs.push(...(await timed(REQUESTS, () => bare.run(input, ticks))));
    // The server and its control alternate request by request.
    const before = await serverTimes(batched.metricsPort);
    for (let i = 0; i < REQUESTS; i++) {
      for (const [c, into] of [
        [client, serverMs],
        [thinClient, thinMs],
      ] as const) {
        const t0 = performance.now();
        await c.classify();
        into.push(performance.now() - t0);
      }
    }
    const after = await serverTimes(batched.metricsPort);
    for (const key of Object.keys(inside) as (keyof typeof inside)[]) inside[key] += after[key] - before[key];
    rpcMs.push(
      ...(await timed(REQUESTS, async () => {
        const t0 = performance.now();
        await client.getModel();
        return performance.now() - t0;
      })),
    );

    // The real server's and the control's health alternate, one probe every 5 ms.
    const prober = healthClient(batched.port);
    const thinProber = healthClient(thin.port);
    const probe = async (check: () => Promise<void>, into: hdr.Histogram) => {
      const t0 = performance.now();
      await check();
      into.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
      await new Promise((resolve) => setTimeout(resolve, 5));
    };
    for (let i = 0; i < REQUESTS * 3; i++) {
      await probe(prober.check, idleHealth);
      await probe(thinProber.check, thinIdleHealth);
    }
    let probing = true;
    const probes = (async () => {
      while (probing) {
        await probe(prober.check, health);
        await probe(thinProber.check, thinHealth);
      }
    })();
    const [rps, graphMs] = await graphMsPerRequest(batched.metricsPort, () => saturate(batched.port, CALLERS, SECONDS));
    batchedRps.push(rps);
    batchedGraphMs.push(graphMs);
    probing = false;
    await probes;
    prober.close();
    thinProber.close();
    const [rps1, graphMs1] = await graphMsPerRequest(unbatched.metricsPort, () =>
      saturate(unbatched.port, CALLERS, SECONDS),
    );
    unbatchedRps.push(rps1);
    unbatchedGraphMs.push(graphMs1);
  }
  client.close();
  thinClient.close();
  await bare.close();
  await Promise.all([batched.stop(), unbatched.stop(), thin.stop()]);

  const results = {
    date: new Date().toISOString(),
    machine: { ...machine, loadAverageAtEnd: loadavg().map((l) => Number(l.toFixed(2))) },
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
    },
    latency: {
      bareMs: { p50: percentile(bareMs, 50), p90: percentile(bareMs, 90), mean: mean(bareMs) },
      serverMs: { p50: percentile(serverMs, 50), p90: percentile(serverMs, 90), mean: mean(serverMs) },
      overheadP50: percentile(serverMs, 50) / percentile(bareMs, 50) - 1,
      overheadMean: mean(serverMs) / mean(bareMs) - 1,
      // The control: the thinnest grpc-js server over the same graphs (thinServer.ts).
      thinServerMs: { p50: percentile(thinMs, 50), p90: percentile(thinMs, 90), mean: mean(thinMs) },
      thinOverheadP50: percentile(thinMs, 50) / percentile(bareMs, 50) - 1,
      /** The 25% target in milliseconds, and what the server adds beyond the control. */
      budgetMs: 0.25 * percentile(bareMs, 50),
      beyondThinP50Ms: percentile(serverMs, 50) - percentile(thinMs, 50),
      // Per request, as the server measured it: the handler from receipt to answer, and inside it
      // the graph runs (the rest is worker hand-offs and the scheduler).
      getModelRoundTripMs: { p50: percentile(rpcMs, 50), mean: mean(rpcMs) },
      serverSideMs: {
        handler: inside.handler / serverMs.length,
        tickRuns: inside.tickRuns / serverMs.length,
        encoderRuns: inside.encoderRuns / serverMs.length,
      },
    },
    throughput: {
      batchedRps: mean(batchedRps),
      unbatchedRps: mean(unbatchedRps),
      perRound: { batched: batchedRps, unbatched: unbatchedRps },
      speedup: mean(batchedRps) / mean(unbatchedRps),
      graphMsPerRequest: { batched: mean(batchedGraphMs), unbatched: mean(unbatchedGraphMs) },
      graphSaving: mean(unbatchedGraphMs) / mean(batchedGraphMs),
    },
    healthMs: {
      thin: { saturated: summary(thinHealth), idle: summary(thinIdleHealth) },
      count: health.totalCount,
      p50: health.getValueAtPercentile(50) / 1000,
      p99: health.getValueAtPercentile(99) / 1000,
      max: health.maxValue / 1000,
      idle: {
        count: idleHealth.totalCount,
        p50: idleHealth.getValueAtPercentile(50) / 1000,
        p99: idleHealth.getValueAtPercentile(99) / 1000,
        max: idleHealth.maxValue / 1000,
      },
    },
  };
  writeFileSync(OUT, `${JSON.stringify(results, null, 2)}\n`);

  const { latency, throughput, healthMs } = results;
  console.log(`| measurement | result | target |
|---|---|---|
| 1. single request, ${ticks} ticks: bare in-process loop (p50 / mean) | ${ms(latency.bareMs.p50)} / ${ms(latency.bareMs.mean)} | |
| 1. single request, ${ticks} ticks: server over gRPC (p50 / mean) | ${ms(latency.serverMs.p50)} / ${ms(latency.serverMs.mean)} | |
| 1. overhead of the server (p50 / mean) | ${(100 * latency.overheadP50).toFixed(1)}% / ${(100 * latency.overheadMean).toFixed(1)}% | <= 25% |
| 1. control: thinnest grpc-js server over the same graphs (p50 / mean), its overhead (p50) | ${ms(latency.thinServerMs.p50)} / ${ms(latency.thinServerMs.mean)}, ${(100 * latency.thinOverheadP50).toFixed(1)}% | |
| 1. the 25% budget; what the server adds beyond the control (p50) | ${ms(latency.budgetMs)}; ${ms(latency.beyondThinP50Ms)} | |
| 1. a gRPC round trip that computes nothing (GetModel, p50 / mean) | ${ms(latency.getModelRoundTripMs.p50)} / ${ms(latency.getModelRoundTripMs.mean)} | |
| 1. inside the server, per request (mean): handler / tick runs / encoder run | ${ms(latency.serverSideMs.handler)} / ${ms(latency.serverSideMs.tickRuns)} / ${ms(latency.serverSideMs.encoderRuns)} | |
| 2. throughput, ${CALLERS} callers, --max-batch 64 | ${throughput.batchedRps.toFixed(1)} req/s (${(throughput.batchedRps * ticks).toFixed(0)} request-ticks/s) | |
| 2. throughput, ${CALLERS} callers, --max-batch 1 | ${throughput.unbatchedRps.toFixed(1)} req/s | |
| 2. speed-up from tick-level batching | ${throughput.speedup.toFixed(2)}x | >= 4x |
| 2. onnxruntime time per answered request, --max-batch 64 / 1 | ${ms(throughput.graphMsPerRequest.batched)} / ${ms(throughput.graphMsPerRequest.unbatched)} (${throughput.graphSaving.toFixed(2)}x less) | |
| 3. health Check while saturated (p50 / p99 / max, ${healthMs.count} checks) | ${ms(healthMs.p50)} / ${ms(healthMs.p99)} / ${ms(healthMs.max)} | p99 < 5 ms |
| 3. health Check on the idle server (p50 / p99 / max, ${healthMs.idle.count} checks) | ${ms(healthMs.idle.p50)} / ${ms(healthMs.idle.p99)} / ${ms(healthMs.idle.max)} | |
| 3. control's health Check meanwhile, while saturated / idle (p50 / p99) | ${ms(healthMs.thin.saturated.p50)} / ${ms(healthMs.thin.saturated.p99)}; ${ms(healthMs.thin.idle.p50)} / ${ms(healthMs.thin.idle.p99)} | |`);
  console.error(`results written to ${OUT}`);
}

try {
  await main();
} catch (error) {
  console.error(error);
  process.exit(1); // the "exit" handlers stop the servers
}
