/**
 * `npm run soak -- --minutes N [--rate R] [--address host:port --metrics-url URL]`: a steady open-loop
 * load of real sample images with deliberate client cancellations and bad requests mixed in, for as
 * long as asked, watching the server's resident memory.
 *
 * Without --address it starts the server itself (`npm start`'s entry point, in its own process) and
 * stops it at the end. Every --report-s seconds it prints throughput, counts by status, p50/p99
 * latency of the good requests and the server's RSS (process_resident_memory_bytes from its /metrics);
 * at the end the memory growth from the end of the warm-up to the end of the run, and a JSON result
 * file. It exits non-zero when any request ended outside its expected statuses (soakMix.ts), when a
 * good request failed, or when RSS grew more than --max-growth percent (when given).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import {
  CtmConnection,
  driveOpenLoop,
  loadSamples,
  type Sample,
  type StartedServer,
  scrapeMetrics,
  seededRandom,
  startServerProcess,
  sumOf,
  type TlsOptions,
} from "../../tools/harness/index.ts";
import { loadAverage, machineRecord } from "../../tools/harness/machine.ts";
import { median, percentile } from "../../tools/harness/statistics.ts";
import { EXPECTED, KINDS, type Kind, type MixFractions, type Outcome, pickKind, send } from "./soakMix.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

const USAGE = `usage: npm run soak -- --minutes N [options]
  --minutes N          how long to hold the load (fractions allowed, e.g. 0.1)
  --rate R             requests per second, Poisson arrivals (default 40)
  --address HOST:PORT  a running server (default: start one on a free port, CPU provider)
  --metrics-url URL    its /metrics, for its RSS (default with --address: none, memory not reported)
  --tls-ca FILE        with --address: connect with TLS, trusting this PEM CA
  --tls-cert FILE      with --tls-key: present this client certificate (mutual TLS)
  --tls-key FILE       its private key
  --tls-server-name N  the name to check the server certificate against
  --token TOKEN        with --address: send "authorization: Bearer TOKEN" (default $CTM_TOKEN)
  --samples PATH       model folder or labels.json (default models/mnist-ctm/1)
  --model NAME         default: mnist-ctm with the default samples, else the server's only model
  --cancel F           share of requests cancelled mid-call by the client (default 0.08)
  --bad F              share of bad requests: corrupt image, wrong shape, unknown model, bad policy (default 0.08)
  --report-s S         seconds between reports (default 15)
  --sample-s S         seconds between RSS samples (default 5)
  --burst N            before the timed load: N good requests at once, three times, so that the server's
                       high-water marks (largest batch, most images in flight) are reached before the
                       memory baseline (default 0; not counted in the results, but checked)
  --warmup-s S         memory baseline window starts this late (default min(60, 20% of the run))
  --max-growth PCT     also fail when RSS grew more than this from the baseline to the end
  --seed N             random seed (default 1)
  --out FILE           JSON result (default out/soak/soak-<time>.json)`;

class UsageError extends Error {}

interface SoakOptions {
  minutes: number;
  rate: number;
  address: string | undefined;
  tls: TlsOptions | null;
  token: string | undefined;
  metricsUrl: string | undefined;
  samples: string;
  model: string | undefined;
  fractions: MixFractions;
  reportS: number;
  sampleS: number;
  burst: number;
  warmupS: number;
  maxGrowth: number | undefined;
  seed: number;
  out: string;
}

function parseOptions(argv: string[]): SoakOptions | "help" {
  const { values } = parseArgs({
    args: argv,
    options: {
      minutes: { type: "string" },
      rate: { type: "string" },
      address: { type: "string" },
      "metrics-url": { type: "string" },
      "tls-ca": { type: "string" },
      "tls-cert": { type: "string" },
      "tls-key": { type: "string" },
      "tls-server-name": { type: "string" },
      token: { type: "string" },
      samples: { type: "string" },
      model: { type: "string" },
      cancel: { type: "string" },
      bad: { type: "string" },
      "report-s": { type: "string" },
      "sample-s": { type: "string" },
      burst: { type: "string" },
      "warmup-s": { type: "string" },
      "max-growth": { type: "string" },
      seed: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean" },
    },
    strict: true,
  });
  if (values.help) return "help";
  const number = (
    flag: string,
    value: string | undefined,
    fallback: number | undefined,
    min: number,
    max = Infinity,
  ) => {
    if (value === undefined) {
      if (fallback === undefined) throw new UsageError(`--${flag} is required`);
      return fallback;
    }
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max)
      throw new UsageError(`--${flag} must be a number in [${min}, ${max}], got "${value}"`);
    return n;
  };
  const minutes = number("minutes", values.minutes, undefined, 0.01);
  const fractions = {
    cancel: number("cancel", values.cancel, 0.08, 0, 0.5),
    bad: number("bad", values.bad, 0.08, 0, 0.5),
  };
  const anyTls = values["tls-ca"] !== undefined || values["tls-cert"] !== undefined;
  const token = values.token ?? (process.env.CTM_TOKEN || undefined);
  // The server the soak starts itself is plaintext and open; security options are for --address.
  if ((anyTls || token !== undefined) && values.address === undefined)
    throw new UsageError("--tls-* and --token need --address: the server the soak starts has neither");
  if ((values["tls-cert"] === undefined) !== (values["tls-key"] === undefined))
    throw new UsageError("--tls-cert and --tls-key go together");
  if (values["tls-server-name"] !== undefined && !anyTls)
    throw new UsageError("--tls-server-name needs TLS: give --tls-ca or --tls-cert/--tls-key");
  return {
    minutes,
    rate: number("rate", values.rate, 40, 0.1),
    address: values.address,
    tls: anyTls
      ? {
          ca: values["tls-ca"],
          cert: values["tls-cert"],
          key: values["tls-key"],
          serverName: values["tls-server-name"],
        }
      : null,
    token,
    metricsUrl: values["metrics-url"],
    samples: values.samples ?? join(REPO, "models", "mnist-ctm", "1"),
    // The default samples are mnist-ctm's, and the server serves every model under models/.
    model: values.model ?? (values.samples === undefined ? "mnist-ctm" : undefined),
    fractions,
    reportS: number("report-s", values["report-s"], 15, 0.5),
    sampleS: number("sample-s", values["sample-s"], 5, 0.2),
    burst: number("burst", values.burst, 0, 0, 4096),
    warmupS: number("warmup-s", values["warmup-s"], Math.min(60, minutes * 60 * 0.2), 0),
    maxGrowth:
      values["max-growth"] === undefined ? undefined : number("max-growth", values["max-growth"], undefined, 0),
    seed: number("seed", values.seed, 1, 0),
    out: values.out ?? join(REPO, "out", "soak", `soak-${new Date().toISOString().replace(/[:.]/g, "-")}.json`),
  };
}

// ---------------------------------------------------------------- measurements
interface MemorySample {
  rssBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
}

/** The server's memory from its Prometheus text (prom-client's default metrics, prefixed ctm_). */
async function readMemory(metricsUrl: string | undefined): Promise<MemorySample | null> {
  if (!metricsUrl) return null;
  try {
    const samples = await scrapeMetrics(metricsUrl);
    const value = (name: string) => {
      const series = samples.find((s) => s.name === `ctm_${name}` || s.name === name);
      return series ? sumOf(samples, series.name) : Number.NaN;
    };
    return {
      rssBytes: value("process_resident_memory_bytes"),
      heapUsedBytes: value("nodejs_heap_size_used_bytes"),
      externalBytes: value("nodejs_external_memory_bytes"),
    };
  } catch {
    return null;
  }
}

/** A statistic of no values is NaN; the result file and the log say null ("-") instead. */
const orNull = (value: number): number | null => (Number.isNaN(value) ? null : value);

interface Interval {
  /** Seconds since the load started, at the end of this interval. */
  atS: number;
  /** The last one: after the load stopped and every call ended. */
  final: boolean;
  completed: number;
  throughputRps: number;
  byStatus: Record<string, number>;
  goodP50Ms: number | null;
  goodP99Ms: number | null;
  inFlight: number;
  memory: MemorySample | null;
}

class Tally {
  outcomes: Outcome[] = [];
  add(outcome: Outcome): void {
    this.outcomes.push(outcome);
  }
  take(): Outcome[] {
    const taken = this.outcomes;
    this.outcomes = [];
    return taken;
  }
}

const isGood = (kind: Kind) => kind === "good-unary" || kind === "good-stream";
const MB = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

function formatInterval(i: Interval): string {
  const statuses = Object.entries(i.byStatus)
    .sort()
    .map(([code, n]) => `${code} ${n}`)
    .join(", ");
  const latency = i.goodP50Ms === null ? "-" : `${i.goodP50Ms.toFixed(1)}/${(i.goodP99Ms ?? 0).toFixed(1)} ms`;
  const memory = i.memory ? `rss ${MB(i.memory.rssBytes)} MiB, heap ${MB(i.memory.heapUsedBytes)} MiB` : "rss -";
  return `[${i.atS.toFixed(0).padStart(5)} s${i.final ? " end" : ""}] ${i.throughputRps.toFixed(1)} rps | ${statuses} | good p50/p99 ${latency} | ${memory} | in flight ${i.inFlight}`;
}

/**
 * RSS moves by several percent from one sample to the next (garbage collection, allocator arenas of
 * the worker and onnxruntime threads), so growth compares medians of windows, not two samples: the
 * window after the warm-up with the last window of the run, each min(60 s, 20% of the run) long.
 */
function memoryGrowth(series: (MemorySample & { atS: number })[], warmupS: number, runS: number) {
  const windowS = Math.min(60, runS * 0.2);
  const after = series.filter((m) => m.atS >= warmupS);
  const baseline = after.filter((m) => m.atS <= (after[0]?.atS ?? 0) + windowS);
  const end = series.filter((m) => m.atS >= runS - windowS && m.atS >= (baseline.at(-1)?.atS ?? 0));
  const baselineRss = orNull(median(baseline.map((m) => m.rssBytes)));
  const endRss = orNull(median(end.map((m) => m.rssBytes)));
  const first = after[0];
  const last = series.at(-1);
  return {
    samples: series.length,
    windowS,
    baselineFromS: baseline[0]?.atS ?? null,
    baselineToS: baseline.at(-1)?.atS ?? null,
    baselineRssBytes: baselineRss,
    endFromS: end[0]?.atS ?? null,
    endRssBytes: endRss,
    growthPct: baselineRss && endRss ? (endRss / baselineRss - 1) * 100 : null,
    firstSampleRssBytes: first?.rssBytes ?? null,
    lastSampleRssBytes: last?.rssBytes ?? null,
    sampleGrowthPct: first && last ? (last.rssBytes / first.rssBytes - 1) * 100 : null,
    peakRssBytes: series.length > 0 ? Math.max(...series.map((m) => m.rssBytes)) : null,
    heapUsedBaselineBytes: orNull(median(baseline.map((m) => m.heapUsedBytes))),
    heapUsedEndBytes: orNull(median(end.map((m) => m.heapUsedBytes))),
    series,
  };
}

function describeGrowth(m: ReturnType<typeof memoryGrowth>): string {
  if (m.growthPct === null || m.baselineRssBytes === null || m.endRssBytes === null) {
    return "server RSS: not measured (no --metrics-url, or too short a run)";
  }
  const signed = (pct: number | null) => (pct === null ? "-" : `${pct >= 0 ? "+" : ""}${pct.toFixed(2)}%`);
  return (
    `server RSS, median of ${m.windowS.toFixed(0)} s windows: ${MB(m.baselineRssBytes)} MiB after warm-up ` +
    `(${m.baselineFromS?.toFixed(0)}-${m.baselineToS?.toFixed(0)} s) -> ${MB(m.endRssBytes)} MiB at the end ` +
    `(from ${m.endFromS?.toFixed(0)} s): ${signed(m.growthPct)}; ` +
    `first/last sample ${MB(m.firstSampleRssBytes ?? 0)} -> ${MB(m.lastSampleRssBytes ?? 0)} MiB (${signed(m.sampleGrowthPct)}); ` +
    `peak ${MB(m.peakRssBytes ?? 0)} MiB; heap used ${MB(m.heapUsedBaselineBytes ?? 0)} -> ${MB(m.heapUsedEndBytes ?? 0)} MiB`
  );
}

// ---------------------------------------------------------------- the run
async function soak(options: SoakOptions): Promise<boolean> {
  let server: StartedServer | undefined;
  let { address, metricsUrl } = options;
  if (!address) {
    process.stderr.write("starting a server (npm start's entry point, CPU provider)...\n");
    server = await startServerProcess(REPO, ["--provider", "cpu"]);
    address = `127.0.0.1:${server.port}`;
    metricsUrl = `http://127.0.0.1:${server.metricsPort}/metrics`;
  }
  const connection = CtmConnection.open({ address, tls: options.tls, token: options.token, connections: 2 });
  try {
    const info = await connection.pickModel(options.model, new Date(Date.now() + 10_000));
    const { samples } = loadSamples(options.samples);
    const context = { connection, model: info.name, inputShape: info.input.shape, timeoutMs: 30_000 };
    const random = seededRandom(options.seed);
    const tally = new Tally();
    const all: Outcome[] = [];
    const unexpected: Outcome[] = [];
    const intervals: Interval[] = [];
    let inFlight = 0;
    process.stdout.write(
      `soak: ${options.minutes} min at ${options.rate} rps against ${address} (model ${info.name}), ` +
        `${(options.fractions.cancel * 100).toFixed(0)}% cancelled, ${(options.fractions.bad * 100).toFixed(0)}% bad\n`,
    );

    for (let round = 0; round < 3 && options.burst > 0; round++) {
      const burst = await Promise.all(
        Array.from({ length: options.burst }, (_, i) =>
          send(
            context,
            i % 2 === 0 ? "good-unary" : "good-stream",
            samples[i % samples.length] as (typeof samples)[0],
            random,
          ),
        ),
      );
      const failed = burst.filter((o) => o.code !== "OK");
      if (failed.length > 0) {
        throw new Error(
          `${failed.length} of the ${options.burst} burst requests failed, e.g. ${failed[0]?.code} ${failed[0]?.details}`,
        );
      }
    }
    if (options.burst > 0) process.stdout.write(`burst: 3 x ${options.burst} good requests at once, all OK\n`);

    const machine = machineRecord();
    const start = performance.now();
    const memorySeries: (MemorySample & { atS: number })[] = [];
    const sampleMemory = async () => {
      const memory = await readMemory(metricsUrl);
      if (memory && Number.isFinite(memory.rssBytes))
        memorySeries.push({ atS: (performance.now() - start) / 1000, ...memory });
    };
    const sampler = setInterval(() => void sampleMemory(), options.sampleS * 1000);
    const report = async (final = false) => {
      const taken = tally.take();
      const previous = intervals.at(-1)?.atS ?? 0;
      const atS = (performance.now() - start) / 1000;
      const byStatus: Record<string, number> = {};
      for (const o of taken) byStatus[o.code] = (byStatus[o.code] ?? 0) + 1;
      const good = taken
        .filter((o) => isGood(o.kind) && o.code === "OK")
        .map((o) => o.latencyMs)
        .sort((a, b) => a - b);
      const interval: Interval = {
        atS,
        final,
        completed: taken.length,
        throughputRps: taken.length / Math.max(1e-3, atS - previous),
        byStatus,
        goodP50Ms: orNull(percentile(good, 50)),
        goodP99Ms: orNull(percentile(good, 99)),
        inFlight,
        memory: await readMemory(metricsUrl),
      };
      intervals.push(interval);
      process.stdout.write(`${formatInterval(interval)}\n`);
    };
    const reporter = setInterval(() => void report(), options.reportS * 1000);

    // The open loop's schedule: a request's latency counts from when it was due, not from when it left.
    let picked = 0;
    const { sent } = await driveOpenLoop<{ kind: Kind; sample: Sample }, Outcome>(
      options.rate,
      "poisson",
      options.seed + 1,
      {
        budget: { kind: "duration", seconds: options.minutes * 60 },
        nextSample: () => {
          const kind = pickKind(random(), options.fractions);
          const sample = samples[picked++ % samples.length];
          if (!sample) throw new Error("no samples to send. This is a bug.");
          return { kind, sample };
        },
        call: ({ kind, sample }, intendedAt) => {
          inFlight++;
          return send(context, kind, sample, random, intendedAt);
        },
        onOutcome: ({ kind }, outcome) => {
          inFlight--;
          tally.add(outcome);
          all.push(outcome);
          if (!EXPECTED[kind].includes(outcome.code)) unexpected.push(outcome);
        },
        signal: new AbortController().signal,
      },
    );
    clearInterval(reporter);
    clearInterval(sampler);
    await report(true);
    await sampleMemory();
    const elapsedS = (performance.now() - start) / 1000;

    // ------------------------------------------------------------ summary
    const byKind = Object.fromEntries(
      KINDS.map((kind) => {
        const codes: Record<string, number> = {};
        for (const o of all) if (o.kind === kind) codes[o.code] = (codes[o.code] ?? 0) + 1;
        return [kind, codes];
      }),
    );
    const goodLatency = all
      .filter((o) => isGood(o.kind) && o.code === "OK")
      .map((o) => o.latencyMs)
      .sort((a, b) => a - b);
    const answered = all.filter((o) => o.correct !== null);
    const memory = memoryGrowth(memorySeries, options.warmupS, elapsedS);
    const { growthPct } = memory;
    const tooMuchGrowth = options.maxGrowth !== undefined && growthPct !== null && growthPct > options.maxGrowth;
    const ok = unexpected.length === 0 && !tooMuchGrowth;
    const result = {
      ok,
      startedAt: new Date(Date.now() - elapsedS * 1000).toISOString(),
      argv: process.argv.slice(2),
      address: server ? "spawned" : address,
      model: info.name,
      machine: { ...machine, loadAverageAtEnd: loadAverage() },
      options: { ...options, out: undefined },
      elapsedS,
      sent,
      completed: all.length,
      throughputRps: all.length / elapsedS,
      byKind,
      goodLatencyMs: {
        p50: orNull(percentile(goodLatency, 50)),
        p99: orNull(percentile(goodLatency, 99)),
        count: goodLatency.length,
      },
      accuracy: answered.length > 0 ? answered.filter((o) => o.correct).length / answered.length : null,
      memory,
      intervals,
      unexpected: unexpected.slice(0, 50),
      unexpectedCount: unexpected.length,
    };
    mkdirSync(dirname(options.out), { recursive: true });
    writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);

    process.stdout.write(
      `\n${all.length} requests in ${elapsedS.toFixed(1)} s (${result.throughputRps.toFixed(1)} rps)\n`,
    );
    for (const kind of KINDS) {
      const codes = Object.entries(byKind[kind] ?? {})
        .map(([code, n]) => `${code} ${n}`)
        .join(", ");
      process.stdout.write(`  ${kind.padEnd(14)} ${codes || "-"}  (expected: ${EXPECTED[kind].join(" or ")})\n`);
    }
    process.stdout.write(
      `good latency p50 ${result.goodLatencyMs.p50?.toFixed(1) ?? "-"} ms, p99 ${result.goodLatencyMs.p99?.toFixed(1) ?? "-"} ms; accuracy ${result.accuracy === null ? "-" : (result.accuracy * 100).toFixed(1)}%\n`,
    );
    process.stdout.write(`${describeGrowth(memory)}\n`);
    for (const o of unexpected.slice(0, 10)) {
      process.stdout.write(
        `UNEXPECTED ${o.kind}: ${o.code} ${o.details} (expected ${EXPECTED[o.kind].join(" or ")})\n`,
      );
    }
    if (tooMuchGrowth)
      process.stdout.write(`FAIL: RSS grew ${growthPct?.toFixed(2)}%, more than --max-growth ${options.maxGrowth}%\n`);
    process.stdout.write(`${ok ? "PASS" : "FAIL"}; wrote ${options.out}\n`);
    return ok;
  } finally {
    connection.close();
    await server?.stop();
  }
}

try {
  const options = parseOptions(process.argv.slice(2));
  if (options === "help") {
    process.stdout.write(`${USAGE}\n`);
  } else {
    process.exitCode = (await soak(options)) ? 0 : 1;
  }
} catch (error) {
  // A gRPC error's code is a number; only node:util's parseArgs errors have string codes.
  const code = (error as { code?: unknown }).code;
  if (error instanceof UsageError || (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS"))) {
    process.stderr.write(`soak: ${(error as Error).message}\n${USAGE}\n`);
    process.exitCode = 2;
  } else if (typeof code === "number" && error instanceof Error) {
    // A gRPC status is the server's (or the network's) answer, not a bug here: its message says it all.
    process.stderr.write(`soak: ${error.message}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`soak: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  }
}
