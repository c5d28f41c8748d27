/**
 * The load test end to end: a real server on loopback, the real CLI in its own process, a small sweep
 * over the model's labelled sample images (unary and streaming, closed and open loop), then the files
 * it wrote.
 *
 * The accuracy check is exact. Before the sweep, each image is classified once with threshold 1.0 and
 * its full trace (per-tick certainty and top class); the calibration rule (halt at the first tick
 * whose certainty reaches t, else answer with the most certain tick) applied to those traces says
 * what every point must report: correct answers, the exit-tick histogram and the halting reasons.
 * Each point sends every image exactly once, so the numbers must match, not just come close; the only
 * slack is for images whose certainty lies within float noise of a threshold (batching changes the
 * last bits), counted and normally zero. A load test that mislabels, miscounts or records warm-up
 * calls fails it.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import * as hdr from "hdr-histogram-js";
import sharp from "sharp";
import { parseConfig, type ServerConfig } from "../../server/src/config.ts";
import { createLogger } from "../../server/src/logger.ts";
import { type RunningServer, startServer } from "../../server/src/server.ts";
import type { ModelInfoMessage } from "../../server/src/transport/ctmV1/ctmProtocol.ts";
import { createCtmClient } from "../../tools/harness/index.ts";
import { PLOT_FILES } from "../src/loadtestPlots.ts";
import type { LoadtestResult, PointResult } from "../src/loadtestResult.ts";
import { RESULT_FILES } from "../src/resultFiles.ts";
import { loadLabel, pointKey } from "../src/sweepPlan.ts";
import { thresholdPayoffs } from "../src/thresholdComparison.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const MODEL = "mnist-ctm";
/** Images in the sweep; every point sends each of them once. */
const IMAGES = 20;
/** Certainties this close to a threshold may land on either side of it under batching. */
const NOISE = 1e-4;

interface Labelled {
  file: string;
  label: number;
}

interface Trace {
  label: number;
  certainty: number[];
  top: number[];
  /** Top-1 minus top-2 probability, per tick: a near tie may flip the top class. */
  margin: number[];
}

interface Expected {
  correct: number;
  histogram: number[];
  threshold: number;
  /** Images whose outcome float noise could change. */
  ambiguous: number;
}

/** The calibration rule (docs/models.md, "Halting and calibration") on full traces. */
function expectedAt(traces: Trace[], threshold: number, maxTicks: number): Expected {
  const histogram = new Array<number>(maxTicks).fill(0);
  let correct = 0;
  let reached = 0;
  let ambiguous = 0;
  for (const trace of traces) {
    const first = trace.certainty.findIndex((c) => c >= threshold);
    let answer = first;
    if (first < 0) {
      answer = 0;
      trace.certainty.forEach((c, i) => {
        if (c > (trace.certainty[answer] as number)) answer = i;
      });
    }
    const ticksUsed = first >= 0 ? first + 1 : trace.certainty.length;
    histogram[ticksUsed - 1] = (histogram[ticksUsed - 1] ?? 0) + 1;
    if (first >= 0) reached++;
    if (trace.top[answer] === trace.label) correct++;
    const best = Math.max(...trace.certainty);
    const nearThreshold = trace.certainty.some((c) => Math.abs(c - threshold) < NOISE);
    const nearTie = trace.certainty.filter((c) => best - c < NOISE).length > 1;
    if (nearThreshold || (first < 0 && nearTie) || (trace.margin[answer] as number) < NOISE) ambiguous++;
  }
  return { correct, histogram, threshold: reached, ambiguous };
}

/** A sweep that hangs (a server that stops answering) fails the test instead of stalling the suite. */
const RUN_LIMIT_MS = 120_000;

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "loadtest/src/main.ts", ...args], {
      cwd: ROOT,
      timeout: RUN_LIMIT_MS,
      killSignal: "SIGKILL",
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const isPng = (file: string) =>
  readFileSync(file)
    .subarray(0, 8)
    .equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

describe("npm run loadtest against a real server", () => {
  let server: RunningServer;
  let model: ModelInfoMessage;
  let work: string;
  let traces: Trace[];
  let thresholds: number[];
  let result: LoadtestResult;
  let out: string;
  let stderr: string;
  let address: string;
  let images: string;

  before(async () => {
    const config = parseConfig(
      [
        "--port",
        "0",
        "--metrics-port",
        "0",
        "--http-port",
        "0",
        "--provider",
        "cpu",
        "--models-dir",
        join(ROOT, "models"),
      ],
      {},
    ) as ServerConfig;
    // Metrics on a port of their own (0 in the object, unlike the flag, picks a free one): the
    // sweep reads the server's graph time from them (--metrics).
    config.metrics = { host: "127.0.0.1", port: 0 };
    server = await startServer(config, { logger: createLogger("silent") });
    address = `127.0.0.1:${server.port}`;
    const client = createCtmClient(address);
    model = await client.GetModel({ name: MODEL });

    // A folder of the first IMAGES samples with their labels: the "folder of images" input path.
    const modelDir = join(ROOT, "models", MODEL, String(model.version));
    const labels = (JSON.parse(readFileSync(join(modelDir, "samples", "labels.json"), "utf8")) as Labelled[]).slice(
      0,
      IMAGES,
    );
    work = mkdtempSync(join(tmpdir(), "loadtest-"));
    images = join(work, "images");
    mkdirSync(images);
    for (const { file } of labels) copyFileSync(join(modelDir, "samples", file), join(images, file));
    writeFileSync(join(images, "labels.json"), JSON.stringify(labels));

    traces = [];
    for (const { file, label } of labels) {
      const response = await client.Classify({
        model: MODEL,
        image: { data: readFileSync(join(images, file)) },
        halt_policy: { certainty_threshold: 1 },
        top_k: 2,
        include_trace: true,
      });
      traces.push({
        label,
        certainty: response.trace.map((t) => t.certainty),
        top: response.trace.map((t) => t.top_k[0]?.index ?? -1),
        margin: response.trace.map((t) => (t.top_k[0]?.probability ?? 0) - (t.top_k[1]?.probability ?? 0)),
      });
    }
    client.close();

    // A threshold that half the images reach (so both THRESHOLD and MAX_TICKS occur whatever the
    // model), halfway between two images' peak certainties, and 1.0 (run to the end).
    const peaks = traces.map((t) => Math.max(...t.certainty)).sort((a, b) => a - b);
    const middle = Math.floor(peaks.length / 2);
    const median = Number((((peaks[middle - 1] as number) + (peaks[middle] as number)) / 2).toPrecision(6));
    thresholds = [median, 1];

    out = join(work, "out");
    const ran = await run([
      "--address",
      address,
      "--model",
      MODEL,
      "--samples",
      images,
      "--thresholds",
      thresholds.join(","),
      "--concurrency",
      "1,4",
      "--rate",
      "40",
      "--arrival",
      "poisson",
      "--requests",
      String(IMAGES),
      "--warmup-requests",
      "4",
      "--timeout-ms",
      "20000",
      "--out",
      out,
      "--compare-thresholds",
      "--metrics",
      `http://127.0.0.1:${server.metricsPort}/metrics`,
    ]);
    stderr = ran.stderr;
    assert.equal(ran.code, 0, `loadtest failed (exit ${ran.code}):\n${ran.stderr}`);
    assert.match(ran.stdout, /\| call \| load \| threshold \|/);
    result = JSON.parse(readFileSync(join(out, RESULT_FILES.json), "utf8")) as LoadtestResult;
  });

  after(async () => {
    await server?.shutdown(100);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("sweeps every call kind x load x threshold", () => {
    assert.equal(result.schema, "ctm-loadtest/1");
    assert.equal(result.interrupted, false);
    assert.equal(result.environment.loadAverage.start.length, 3);
    assert.equal(result.environment.loadAverage.end.length, 3);
    assert.deepEqual(result.model, {
      name: MODEL,
      version: model.version,
      provider: model.provider,
      trainedTicks: model.trained_ticks,
      maxTicks: model.default_policy.max_ticks || model.trained_ticks,
    });
    assert.deepEqual(result.samples, { source: join(work, "images", "labels.json"), count: IMAGES, labelled: IMAGES });
    const keys = result.points.map((p) => `${p.call} ${JSON.stringify(p.load)} ${p.threshold}`);
    assert.equal(new Set(keys).size, 2 * 3 * thresholds.length);
    for (const call of ["unary", "stream"]) {
      for (const load of [
        { kind: "closed", concurrency: 1 },
        { kind: "closed", concurrency: 4 },
        { kind: "open", rate: 40, arrival: "poisson" },
      ]) {
        for (const t of thresholds) assert.ok(keys.includes(`${call} ${JSON.stringify(load)} ${t}`), `${call} ${t}`);
      }
    }
    assert.match(stderr, /12\/12\]/, "a line per finished point on stderr");
  });

  it("records every field of every point", () => {
    for (const p of result.points) {
      const where = `${p.call} ${JSON.stringify(p.load)} t=${p.threshold}`;
      assert.equal(p.requests, IMAGES, where);
      assert.equal(p.ok, IMAGES, where);
      assert.deepEqual(p.errors, {}, where);
      assert.ok(p.elapsedS > 0 && p.throughputRps > 0, where);
      assert.ok(Math.abs(p.throughputRps - p.ok / p.elapsedS) < 1e-9, where);
      assert.ok(p.clientCpuCores > 0 && p.clientCpuCores < 4, `${where}: client CPU ${p.clientCpuCores}`);
      assert.equal(p.offeredRps === null, p.load.kind === "closed", where);
      for (const latency of [p.latencyMs, ...(p.firstTickMs ? [p.firstTickMs] : [])]) {
        assert.equal(latency.count, IMAGES, where);
        const order = [latency.min, latency.p50, latency.p90, latency.p99, latency.p999, latency.max];
        assert.ok(
          order.every((v, i) => v > 0 && (i === 0 || v >= (order[i - 1] as number))),
          `${where}: ${order}`,
        );
        assert.ok(latency.mean >= latency.min && latency.mean <= latency.max, where);
        assert.equal(hdr.decodeFromCompressedBase64(latency.hdr).totalCount, IMAGES, where);
      }
      assert.equal(p.firstTickMs !== null, p.call === "stream", where);
      if (p.firstTickMs) assert.ok(p.firstTickMs.p50 <= p.latencyMs.max, where);
      assert.equal(p.ticks.histogram.length, result.model.maxTicks, where);
      assert.equal(
        p.ticks.histogram.reduce((a, b) => a + b, 0),
        IMAGES,
        where,
      );
      assert.ok(p.ticks.p50 <= p.ticks.p90 && p.ticks.p90 <= p.ticks.p99 && p.ticks.p99 <= p.ticks.max, where);
      assert.equal(
        Object.values(p.haltReasons).reduce((a, b) => a + b, 0),
        IMAGES,
        where,
      );
      assert.equal(p.labelled, IMAGES, where);
      assert.equal(p.accuracy, p.correct / p.labelled, where);
    }
  });

  it("reports the accuracy, exit ticks and halting reasons the calibration rule gives on the same images", () => {
    for (const t of thresholds) {
      const expected = expectedAt(traces, t, result.model.maxTicks);
      for (const p of result.points.filter((point) => point.threshold === t)) {
        const where = `${p.call} ${JSON.stringify(p.load)} t=${t} (${expected.ambiguous} ambiguous)`;
        assert.ok(
          Math.abs(p.correct - expected.correct) <= expected.ambiguous,
          `${where}: correct ${p.correct} vs ${expected.correct}`,
        );
        const l1 = p.ticks.histogram.reduce((sum, n, i) => sum + Math.abs(n - (expected.histogram[i] ?? 0)), 0);
        assert.ok(l1 <= 2 * expected.ambiguous, `${where}: exit ticks ${p.ticks.histogram} vs ${expected.histogram}`);
        const halted = p.haltReasons.THRESHOLD ?? 0;
        assert.ok(
          Math.abs(halted - expected.threshold) <= expected.ambiguous,
          `${where}: ${halted} halted on threshold`,
        );
        assert.equal(halted + (p.haltReasons.MAX_TICKS ?? 0), IMAGES, where);
      }
    }
    // The threshold between two peak certainties splits the images: both reasons occur.
    const split = expectedAt(traces, thresholds[0] as number, result.model.maxTicks);
    assert.ok(
      split.threshold > 0 && split.threshold < IMAGES,
      `threshold ${thresholds[0]} reached by ${split.threshold}`,
    );
  });

  it("carries the model's own calibration where its grid has the threshold", () => {
    const atOne = model.calibration?.thresholds.find((c) => c.threshold === 1);
    for (const p of result.points.filter((point) => point.threshold === 1)) {
      assert.deepEqual(
        p.calibration,
        atOne
          ? {
              split: model.calibration?.split,
              accuracy: atOne.accuracy,
              meanTicks: atOne.mean_ticks,
              reachedFraction: atOne.reached_fraction,
            }
          : null,
      );
    }
  });

  it("sends a target accuracy and measures at the threshold the server certified for it", async () => {
    // Without --signal the server certifies the target on the model's best signal, and says which.
    const signal = model.target_signal === "HALT_SIGNAL_HALT" ? "halt" : "certainty";
    const certified = model.calibration?.signals
      .find((s) => s.signal === model.target_signal)
      ?.certified.find((p) => p.kind === "accuracy" && p.target === 0.95 && p.confidence === 0.9);
    assert.ok(certified, `the shipped calibration certifies accuracy 0.95 at confidence 0.9 on ${signal}`);
    const targetOut = join(work, "target");
    const ran = await run([
      ...["--address", address, "--model", MODEL, "--samples", images],
      ...["--target-accuracy", "0.95", "--target-confidence", "0.9", "--calls", "unary", "--concurrency", "1"],
      ...["--requests", "4", "--warmup-requests", "0", "--no-plots", "--no-progress", "--out", targetOut],
    ]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.match(
      ran.stderr,
      new RegExp(
        `target: accuracy >= 0\\.95 with confidence 0\\.9 on ${signal} -> threshold [0-9.]+ \\(guarantee met\\)`,
      ),
    );
    const targeted = JSON.parse(readFileSync(join(targetOut, RESULT_FILES.json), "utf8")) as LoadtestResult;
    const target = { kind: "accuracy", value: 0.95, confidence: 0.9, met: true };
    assert.deepEqual(targeted.settings.targets, [{ signal, threshold: certified.threshold, target }]);
    assert.deepEqual(
      targeted.points.map((p) => [p.signal, p.threshold, p.target, p.ok]),
      [[signal, certified.threshold, target, 4]],
    );
    assert.match(
      readFileSync(join(targetOut, RESULT_FILES.markdown), "utf8"),
      new RegExp(
        `Requests sent target_accuracy 0\\.95 \\(confidence 0\\.9\\), which the server ran at threshold [0-9.]+ on ${signal} \\(guarantee met\\)`,
      ),
    );
  });

  it("writes the table as CSV and Markdown", () => {
    const csv = readFileSync(join(out, RESULT_FILES.csv), "utf8").trim().split("\n");
    assert.equal(csv.length, 1 + result.points.length);
    const header = (csv[0] as string).split(",");
    for (const column of [
      "call",
      "concurrency",
      "rate",
      "threshold",
      "requests",
      "errors_by_status",
      "throughput_rps",
      "client_cpu_cores",
      "latency_p50_ms",
      "latency_p90_ms",
      "latency_p99_ms",
      "latency_p999_ms",
      "latency_max_ms",
      "first_tick_p50_ms",
      "ticks_mean",
      "halt_threshold",
      "halt_max_ticks",
      "accuracy",
    ]) {
      assert.ok(header.includes(column), column);
    }
    const rows = csv.slice(1).map((line) => line.split(","));
    assert.ok(rows.every((cells) => cells.length === header.length));
    const markdown = readFileSync(join(out, RESULT_FILES.markdown), "utf8");
    const [summary, everyPoint] = markdown.split("**Every point**");
    assert.equal(everyPoint?.trim().split("\n").length, 2 + result.points.length);
    // One row per threshold in the threshold table and in each call kind's latency table.
    for (const t of thresholds) {
      assert.equal(summary?.split("\n").filter((line) => line.startsWith(`| ${t} |`)).length, 3, `threshold ${t}`);
    }
  });

  it("compares every threshold with the highest: achieved payoff, the ticks saved, and the payoff the server's graph time predicts", () => {
    const top = Math.max(...thresholds);
    for (const p of result.points) {
      const graph = p.graph;
      assert.ok(graph, `${pointKey(p)} has the server's graph time`);
      assert.ok(graph.encoderMs > 0 && graph.tickMs > 0, `${pointKey(p)}: ${JSON.stringify(graph)}`);
      assert.ok(graph.encoderRows >= 1 && graph.tickRows >= 1, `${pointKey(p)}: ${JSON.stringify(graph)}`);
    }
    const payoffs = thresholdPayoffs(result);
    assert.equal(payoffs.length, result.points.length);
    for (const r of payoffs) {
      const base = result.points.find(
        (p) => p.call === r.call && loadLabel(p.load) === loadLabel(r.load) && p.threshold === top,
      ) as PointResult;
      const graphMs = (p: PointResult) => (p.graph?.encoderMs ?? 0) + (p.graph?.tickMs ?? 0);
      assert.equal(r.baseline, top);
      assert.equal(r.achieved, r.load.kind === "open" ? null : r.point.throughputRps / base.throughputRps);
      assert.equal(r.predicted, graphMs(base) / graphMs(r.point));
      assert.equal(r.ticksSaved, base.ticks.mean / r.point.ticks.mean);
    }
    const markdown = readFileSync(join(out, RESULT_FILES.markdown), "utf8");
    const [, compared] = markdown.split("**Thresholds compared**");
    assert.match(compared ?? "", /\| payoff achieved \| ticks saved: baseline \/ this \| payoff predicted/);
    const rows = (compared ?? "")
      .split("**Every point**")[0]
      ?.split("\n")
      .filter((l) => l.startsWith("| unary") || l.startsWith("| stream"));
    assert.equal(rows?.length, result.points.length);
  });

  it("draws the plots as valid PNGs", async () => {
    // The signals side by side need targets on both signals (signalComparison.test.ts).
    assert.ok(!existsSync(join(out, PLOT_FILES.signals)));
    for (const name of Object.values(PLOT_FILES).filter((n) => n !== PLOT_FILES.signals)) {
      const file = join(out, name);
      assert.ok(existsSync(file), name);
      assert.ok(isPng(file), `${name} is not a PNG`);
      const meta = await sharp(file).metadata();
      assert.equal(meta.format, "png");
      assert.ok((meta.width ?? 0) >= 400 && (meta.height ?? 0) >= 250, `${name}: ${meta.width}x${meta.height}`);
    }
  });

  it("compares a result with itself: every point, no change", async () => {
    const file = join(out, RESULT_FILES.json);
    const csv = join(work, "compare.csv");
    const ran = await run(["compare", file, file, "--csv", csv]);
    assert.equal(ran.code, 0, ran.stderr);
    const lines = ran.stdout.split("\n");
    for (const p of result.points as PointResult[]) {
      assert.ok(
        lines.some((l) => l.startsWith(`${pointKey(p)} `)),
        `${pointKey(p)} missing`,
      );
    }
    assert.ok(!ran.stdout.includes("%)"), "no relative change between a file and itself");
    assert.equal(readFileSync(csv, "utf8").trim().split("\n").length, 1 + result.points.length);
  });
});
