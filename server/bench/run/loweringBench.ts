/**
 * `npm run bench:lowering`: thinking less under overload, measured. For each model, two servers run
 * side by side from this repository exactly as `npm start` runs them, one with --latency-objective-ms
 * (the controller on) and one without (off). The model's full-depth capacity is measured first, closed
 * loop on the server without the controller, with every request at its target, and so is its capacity at
 * the floor (every request at the lowest rung, the most a controller could answer); then both servers take
 * open-loop Poisson arrivals at multiples of it, point by point, one server after the other (which goes
 * first alternates), and the capacity is measured again at the end, so that a machine whose load moved
 * during the run shows it. Every request asks for the same target with the same floor, so the only
 * difference between the two columns is the controller.
 *
 * Writes the result JSON (the table in docs/benchmarks.md is generated from it: --report), the table to
 * stdout and a plot per model. Options: loweringOptions.ts.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import {
  CtmConnection,
  driveClosedLoop,
  driveOpenLoop,
  loadSamples,
  type Sample,
  type StartedServer,
  seededRandom,
  startServerProcess,
} from "../../../tools/harness/index.ts";
import { loadAverage, machineRecord } from "../../../tools/harness/machine.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import { RASTER_FORMATS } from "../../src/runtime/imageHeader.ts";
import { preprocessImage } from "../../src/runtime/imagePreprocess.ts";
import type { HaltPolicyMessage, ModelInfoMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { http2Caller } from "../parts/http2Caller.ts";
import {
  LOWERING_USAGE,
  type LoweringOptions,
  LoweringUsageError,
  parseLoweringOptions,
} from "../parts/loweringOptions.ts";
import { type ControllerMode, type LoweringPoint, LoweringRecorder } from "../parts/loweringPoint.ts";
import {
  type LoweringResult,
  type ModelRun,
  RESULT_SCHEMA,
  resultMarkdown,
  writeLoweringPlots,
} from "../parts/loweringReport.ts";
import { chooseTargets, loweringPolicies } from "../parts/loweringTargets.ts";
import { readMetrics, serverSideBetween } from "../parts/serverLatency.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
/** A request not answered in this long counts as DEADLINE_EXCEEDED. */
const CALL_TIMEOUT_MS = 10_000;
/** Between points: the controller's hold and arrival window run out, so each point starts level. */
const SETTLE_MS = 3000;
const WARMUP_SECONDS = 2;

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Round-robin over the samples, from the first: the capacity measurement sends each as often. */
function roundRobin(samples: readonly Sample[]): () => Sample {
  let next = 0;
  return () => samples[next++ % samples.length] as Sample;
}

/**
 * Samples drawn at random (seeded): which requests load lowers depends on when they arrive, so in
 * round-robin order the answers at one rung would be a run of neighbouring samples, not a draw.
 */
function randomDraw(samples: readonly Sample[], seed: number): () => Sample {
  const random = seededRandom(seed);
  return () => samples[Math.floor(random() * samples.length)] as Sample;
}

/**
 * The samples as the tensors the server would make of them (its own preprocessing, run here once), so
 * that what the servers spend is the requests' thinking and not their images: image decoding takes a
 * decode slot per image (--decode-slots, 1 on 2 CPUs), which no lowering of ticks can speed up.
 */
async function asTensors(samples: Sample[], modelDir: string): Promise<Sample[]> {
  const { input } = loadModelFolder(modelDir).manifest;
  const image = input.image;
  if (!image) return samples;
  const limits = { maxPixels: 1 << 30, maxSide: 1 << 20, formats: RASTER_FORMATS };
  return Promise.all(
    samples.map(async (sample) => {
      if (!("image" in sample.input)) return sample;
      const values = Array.from(await preprocessImage(sample.input.image.data, image, limits));
      return { ...sample, input: { tensor: { shape: [...input.shape], values } } };
    }),
  );
}

async function startServers(model: string, options: LoweringOptions): Promise<Record<ControllerMode, StartedServer>> {
  const models = mkdtempSync(join(tmpdir(), "ctm-lowering-"));
  symlinkSync(join(REPO, "models", model), join(models, model));
  const flags = [
    "--models-dir",
    models,
    "--workers",
    "1",
    "--max-batch",
    String(options.maxBatch),
    "--max-queue",
    String(options.maxQueue),
  ];
  const off = await startServerProcess(REPO, flags);
  const on = await startServerProcess(REPO, [...flags, "--latency-objective-ms", String(options.objectiveMs)]);
  return { on, off };
}

/** The requests of one policy, to one server. */
function callerFor(server: StartedServer, model: ModelInfoMessage, policy: HaltPolicyMessage) {
  return http2Caller(
    server.port,
    (sample) => ({ model: model.name, version: model.version, ...sample.input, halt_policy: policy, top_k: 1 }),
    CALL_TIMEOUT_MS,
    // Enough connections that the server's --max-concurrent-streams (256 each) is not what refuses.
    16,
  );
}

/** Answers per second: `callers` closed-loop callers sending `policy`. */
async function closedLoopRate(
  server: StartedServer,
  model: ModelInfoMessage,
  policy: HaltPolicyMessage,
  samples: Sample[],
  callers: number,
  seconds: number,
): Promise<number> {
  const caller = callerFor(server, model, policy);
  let answered = 0;
  try {
    const drive = await driveClosedLoop(callers, {
      budget: { kind: "duration", seconds },
      call: caller.call,
      nextSample: roundRobin(samples),
      onOutcome: (_sample, outcome) => {
        if (outcome.ok) answered++;
      },
      signal: new AbortController().signal,
    });
    return answered / drive.elapsedS;
  } finally {
    caller.close();
  }
}

async function measureModel(name: string, options: LoweringOptions): Promise<ModelRun> {
  const loadAtStart = loadAverage();
  const servers = await startServers(name, options);
  const connection = CtmConnection.open({
    address: `127.0.0.1:${servers.off.port}`,
    tls: null,
    token: undefined,
    connections: 1,
  });
  try {
    const model = await connection.pickModel(name, new Date(Date.now() + 10_000));
    const chosen = chooseTargets(model, options);
    const modelDir = join(REPO, "models", name, String(model.version));
    const images = loadSamples(modelDir).samples;
    const samples = options.inputs === "tensor" ? await asTensors(images, modelDir) : images;
    const { fullDepth, flexible, atFloor } = loweringPolicies(chosen);
    log(
      `${name}/${model.version}: target ${chosen.target}, floor ${chosen.floor} on ${chosen.signal}; rungs ${chosen.ladder.map((r) => `${r.target}@${r.threshold}`).join(" ")}`,
    );

    for (const mode of ["off", "on"] as const) {
      await closedLoopRate(servers[mode], model, flexible, samples, options.callers, WARMUP_SECONDS);
    }
    // Full-depth capacity: closed loop on the server without the controller, before and after the points.
    const fullDepthRate = () =>
      closedLoopRate(servers.off, model, fullDepth, samples, options.callers, options.capacitySeconds);
    await sleep(SETTLE_MS);
    const capacity = await fullDepthRate();
    log(`  full-depth capacity ${capacity.toFixed(1)} answers/s (load average ${loadAverage().join(", ")})`);
    // The most any controller can answer without refusing: every request at the lowest rung its floor
    // allows. Where it is under 2x the full-depth capacity, 2x cannot be served without refusals.
    await sleep(SETTLE_MS);
    const atFloorRps = await closedLoopRate(
      servers.off,
      model,
      atFloor,
      samples,
      options.callers,
      options.capacitySeconds,
    );
    log(`  capacity at the floor ${atFloorRps.toFixed(1)} answers/s (${(atFloorRps / capacity).toFixed(2)}x)`);

    const points: LoweringPoint[] = [];
    for (const [i, multiple] of options.loads.entries()) {
      const order: ControllerMode[] = i % 2 === 0 ? ["on", "off"] : ["off", "on"];
      for (const mode of order) {
        await sleep(SETTLE_MS);
        const recorder = new LoweringRecorder();
        const loadAverageNow = loadAverage()[0] as number;
        const caller = callerFor(servers[mode], model, flexible);
        const metricsBefore = await readMetrics(servers[mode].metricsPort);
        const drive = await driveOpenLoop(capacity * multiple, "poisson", options.seed + i, {
          budget: { kind: "duration", seconds: options.seconds },
          call: caller.call,
          nextSample: randomDraw(samples, options.seed + 1000 * i),
          onOutcome: (sample, outcome) => recorder.record(sample, outcome),
          signal: new AbortController().signal,
        });
        caller.close();
        const server = serverSideBetween(metricsBefore, await readMetrics(servers[mode].metricsPort));
        const point = recorder.finish(
          { mode, multiple, offeredRps: drive.offeredRps ?? 0, sent: drive.sent, loadAverage: loadAverageNow, server },
          drive.elapsedS,
        );
        points.push(point);
        log(
          `  ${multiple}x ${mode}: ${point.offeredRps.toFixed(0)}/s offered, ${point.answered} answered, ${point.refused} refused, p50 ${point.latencyMs.p50.toFixed(1)} ms, p99 ${point.latencyMs.p99.toFixed(1)} ms (server: p99 <= ${point.server.p99Ms} ms, ${point.server.cpuCores.toFixed(2)} cores, event loop p99 ${point.server.eventLoopP99Ms.toFixed(0)} ms), ${point.meanTicks.toFixed(1)} ticks, ${point.lowered} lowered, accuracy ${point.accuracy === null ? "-" : (point.accuracy * 100).toFixed(1)}%${point.guaranteesHeld ? "" : " (a stated guarantee not delivered)"}`,
        );
      }
    }
    await sleep(SETTLE_MS);
    const after = await fullDepthRate();
    log(`  full-depth capacity after the points ${after.toFixed(1)} answers/s`);
    return {
      ...chosen,
      objectiveMs: options.objectiveMs,
      capacity: {
        beforeRps: capacity,
        afterRps: after,
        atFloorRps,
        callers: options.callers,
        seconds: options.capacitySeconds,
      },
      loadAverage: { start: loadAtStart, end: loadAverage() },
      points,
    };
  } finally {
    connection.close();
    await Promise.all([servers.on.stop(), servers.off.stop()]);
  }
}

async function main(argv: string[]): Promise<void> {
  const options = parseLoweringOptions(argv);
  if (options === "help") {
    process.stdout.write(`${LOWERING_USAGE}\n`);
    return;
  }
  if (options.report) {
    const result = JSON.parse(readFileSync(options.report, "utf8")) as LoweringResult;
    if (result.schema !== RESULT_SCHEMA) throw new Error(`${options.report} is not a ${RESULT_SCHEMA} result`);
    process.stdout.write(resultMarkdown(result));
    log(`wrote ${(await writeLoweringPlots(result, options.plots)).join(", ")}`);
    return;
  }
  const startedAt = new Date().toISOString();
  const machine = machineRecord();
  const models: ModelRun[] = [];
  for (const name of options.models) models.push(await measureModel(name, options));
  const result: LoweringResult = {
    schema: RESULT_SCHEMA,
    command: `npm run bench:lowering${argv.length > 0 ? ` -- ${argv.join(" ")}` : ""}`,
    startedAt,
    finishedAt: new Date().toISOString(),
    commit: execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: REPO, encoding: "utf8" }).trim(),
    machine,
    settings: {
      loads: options.loads,
      seconds: options.seconds,
      maxBatch: options.maxBatch,
      maxQueue: options.maxQueue,
      workers: 1,
      seed: options.seed,
      inputs: options.inputs,
    },
    models,
  };
  mkdirSync(dirname(options.out), { recursive: true });
  writeFileSync(options.out, `${JSON.stringify(result, null, 1)}\n`);
  process.stdout.write(resultMarkdown(result));
  log(`wrote ${options.out}, ${(await writeLoweringPlots(result, options.plots)).join(", ")}`);
}

try {
  await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof LoweringUsageError) {
    process.stderr.write(`bench:lowering: ${error.message}\n\n${LOWERING_USAGE}\n`);
    process.exit(2);
  }
  process.stderr.write(`bench:lowering: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
}
