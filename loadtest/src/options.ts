/**
 * Command line of `npm run loadtest`: every flag and environment variable is read here. Errors name
 * the flag and the value given.
 */
import { HALT_SIGNALS, type HaltSignal } from "../../server/src/model/calibration.ts";
import type { TlsOptions } from "../../tools/harness/index.ts";
import { ARRIVALS, type Arrival, type Budget, CALL_KINDS, type CallKind, type Load } from "./sweepPlan.ts";

export const USAGE = `Usage:
  npm run loadtest -- [run] [options]          sweep halting rules x load against a running server
  npm run loadtest -- compare A.json B.json    put two result files side by side
  npm run loadtest -- report A.json [--out D]  rewrite a result's CSV, summary and plots (default: beside it)

Target
  --address <host:port>      server (default $CTM_ADDRESS or 127.0.0.1:50051)
  --model <name>             model to load-test (default: the only loaded model)
  --samples <path>           a model folder (its samples/labels.json), a labels.json, or a folder of
                             images (labelled when it holds a labels.json); default models/<model>/<version>
  --tls-ca <file>            PEM root certificate(s): connect with TLS
  --tls-cert <file>          PEM client certificate, with --tls-key: mutual TLS
  --tls-key <file>           PEM client private key
  --tls-server-name <name>   expected name in the server certificate (default: the address host)
  --token <token>            send "authorization: Bearer <token>" (default $CTM_TOKEN)
  --connections <n>          HTTP/2 connections the calls are spread over (default 1)

Sweep
  --thresholds <list>        thresholds in (0, 1] on each --signal (default 0.5,0.8,0.9,0.95,0.99,1)
  --signal <list>            the signals to halt on: certainty, halt (a model with a halting head), or
                             certainty,halt for both side by side (default: certainty; with a target,
                             the signal the server certifies it on, the model's best)
  --target-accuracy <list>   instead of --thresholds: send halt_policy.target_accuracy, one point per
                             target and signal, each at the threshold the server certifies for it
                             (asked once per target and signal before the sweep)
  --target-consistency <list>  the same with halt_policy.target_consistency
  --target-confidence <p>    with a target: halt_policy.target_confidence (default: the server's, 0.95)
  --min-target <f>           with a target: its floor, halt_policy.min_target_accuracy (or _consistency):
                             a server with --latency-objective-ms may lower each target as far as this
                             under load, stating the lower target's guarantee, instead of queueing
  --concurrency <list>       closed loop: callers in flight (default 1,4,16 unless --rate is given)
  --rate <list>              open loop: requests per second, latency from the scheduled send time
  --arrival <kind>           open-loop arrivals: constant or poisson (default poisson)
  --calls <list>             unary, stream or both (default unary,stream)
  --duration <time>          measure each point for this long, e.g. 5s, 500ms, 1m (default 5s)
  --requests <n>             instead of --duration: measure this many requests per point
  --warmup <time>            unmeasured load before each point (default 1s; 0 disables)
  --warmup-requests <n>      instead of --warmup: this many unmeasured requests
  --timeout-ms <n>           deadline of each call (default 30000)
  --seed <n>                 seed of the Poisson arrivals (default 1)
  --compare-thresholds       summarise what each threshold buys against the highest one on its signal:
                             answers/s, p50/p99, mean ticks, accuracy, and the throughput gained beside
                             the ticks saved and the gain the server's graph time predicts (needs
                             --metrics for the prediction); with targets and --signal certainty,halt, also the two
                             signals side by side at each target, with a plot
  --metrics <url>            the server's Prometheus endpoint (e.g. http://127.0.0.1:9464/metrics):
                             record its encoder and tick-graph time per answer at every point

Output
  --out <dir>                result folder (default loadtest/results/<timestamp>)
  --no-plots                 skip the PNG plots
  --no-progress              no live progress bar (finished points are still listed on stderr)

Compare
  --csv <file>               also write the comparison as CSV`;

export class UsageError extends Error {
  override name = "UsageError";
}

export interface RunOptions {
  address: string;
  model: string | undefined;
  samples: string | undefined;
  /** null: plaintext. */
  tls: TlsOptions | null;
  token: string | undefined;
  connections: number;
  thresholds: number[];
  /** --signal; null when not given (thresholds: certainty; targets: the server's choice). */
  signals: HaltSignal[] | null;
  /** Set with --target-accuracy or --target-consistency: requests send them instead of a threshold. */
  target: TargetOption | null;
  calls: CallKind[];
  loads: Load[];
  budget: Budget;
  /** null: no warm-up. */
  warmup: Budget | null;
  timeoutMs: number;
  seed: number;
  out: string;
  plots: boolean;
  progress: boolean;
  /** Summarise each threshold against the highest (thresholdComparison.ts). */
  compareThresholds: boolean;
  /** The server's /metrics, scraped around every point (serverGraphTime.ts). */
  metricsUrl: string | undefined;
}

export interface TargetOption {
  kind: "accuracy" | "consistency";
  values: number[];
  /** 0: the server's default. */
  confidence: number;
  /** The floor every request gives (min_target_<kind>); 0: none. */
  floor: number;
}

export interface CompareOptions {
  before: string;
  after: string;
  csv: string | undefined;
}

export interface ReportOptions {
  file: string;
  out: string | undefined;
  plots: boolean;
}

export type Command =
  | { kind: "run"; options: RunOptions }
  | { kind: "compare"; options: CompareOptions }
  | { kind: "report"; options: ReportOptions }
  | "help";

export const DEFAULT_THRESHOLDS = [0.5, 0.8, 0.9, 0.95, 0.99, 1];
export const DEFAULT_CONCURRENCY = [1, 4, 16];

function positiveInteger(flag: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < 1)
    throw new UsageError(`${flag} must be a positive integer, got ${JSON.stringify(value)}`);
  return n;
}

function list<T>(flag: string, value: string, item: (text: string) => T): T[] {
  const parts = value.split(",").map((p) => p.trim());
  if (parts.some((p) => p === ""))
    throw new UsageError(`${flag} must be a comma-separated list, got ${JSON.stringify(value)}`);
  return parts.map(item);
}

function targetValue(flag: string, text: string): number {
  const n = Number(text);
  if (text.trim() === "" || !(n > 0 && n <= 1))
    throw new UsageError(`${flag} must be in (0, 1], got ${JSON.stringify(text)}`);
  return n;
}

function confidence(text: string): number {
  const n = Number(text);
  if (text.trim() === "" || !(n > 0 && n < 1))
    throw new UsageError(`--target-confidence must be in (0, 1), got ${JSON.stringify(text)}`);
  return n;
}

function threshold(flag: string, text: string): number {
  const t = Number(text);
  if (!Number.isFinite(t) || t <= 0 || t > 1)
    throw new UsageError(`${flag}: thresholds must be in (0, 1], got ${JSON.stringify(text)}`);
  return t;
}

function rate(flag: string, text: string): number {
  const r = Number(text);
  if (!Number.isFinite(r) || r <= 0)
    throw new UsageError(`${flag}: rates must be positive numbers, got ${JSON.stringify(text)}`);
  return r;
}

/** "5s", "500ms", "1m" or a bare number of seconds. */
export function parseSeconds(flag: string, value: string, allowZero: boolean): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
  const seconds = match ? Number(match[1]) * ({ ms: 0.001, s: 1, m: 60 }[match[2] ?? "s"] ?? 1) : Number.NaN;
  if (!Number.isFinite(seconds) || (seconds === 0 && !allowZero)) {
    throw new UsageError(
      `${flag} must be a ${allowZero ? "" : "positive "}time such as 5s, 500ms or 1m, got ${JSON.stringify(value)}`,
    );
  }
  return seconds;
}

const distinct = <T>(values: T[]): T[] => [...new Set(values)];

function timestamp(date: Date): string {
  return date.toISOString().replace(/[:]/g, "").replace(/\..*$/, "Z");
}

export function parseCommand(argv: readonly string[], env: NodeJS.ProcessEnv, now = new Date()): Command {
  const args = [...argv];
  if (args[0] === "compare") return parseCompare(args.slice(1));
  if (args[0] === "report") return parseReport(args.slice(1));
  if (args[0] === "run") args.shift();

  const given = new Map<string, string>();
  const switches = new Set<string>();
  const VALUE_FLAGS = new Set([
    "--address",
    "--model",
    "--samples",
    "--tls-ca",
    "--tls-cert",
    "--tls-key",
    "--tls-server-name",
    "--token",
    "--connections",
    "--thresholds",
    "--signal",
    "--target-accuracy",
    "--target-consistency",
    "--target-confidence",
    "--min-target",
    "--concurrency",
    "--rate",
    "--arrival",
    "--calls",
    "--duration",
    "--requests",
    "--warmup",
    "--warmup-requests",
    "--timeout-ms",
    "--seed",
    "--out",
    "--metrics",
  ]);
  const SWITCHES = new Set(["--no-plots", "--no-progress", "--compare-thresholds"]);
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === "--help" || arg === "-h") return "help";
    const eq = arg.indexOf("=");
    const [flag, inline] = arg.startsWith("--") && eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    if (SWITCHES.has(flag) && inline === undefined) {
      switches.add(flag);
    } else if (VALUE_FLAGS.has(flag)) {
      const value = inline ?? args[++i];
      if (value === undefined || (inline === undefined && value.startsWith("--")))
        throw new UsageError(`${flag} needs a value`);
      given.set(flag, value);
    } else {
      throw new UsageError(`unknown argument ${JSON.stringify(arg)}; see --help`);
    }
  }
  const get = (flag: string) => given.get(flag);

  const exclusive = (a: string, b: string) => {
    if (given.has(a) && given.has(b)) throw new UsageError(`${a} and ${b} exclude each other; give one`);
  };
  exclusive("--duration", "--requests");
  exclusive("--warmup", "--warmup-requests");
  exclusive("--target-accuracy", "--target-consistency");
  exclusive("--thresholds", "--target-accuracy");
  exclusive("--thresholds", "--target-consistency");
  const targetKind = given.has("--target-accuracy")
    ? "accuracy"
    : given.has("--target-consistency")
      ? "consistency"
      : undefined;
  if (given.has("--target-confidence") && targetKind === undefined)
    throw new UsageError("--target-confidence applies to a target: give --target-accuracy or --target-consistency");
  if (given.has("--min-target") && targetKind === undefined)
    throw new UsageError("--min-target is the floor of a target: give --target-accuracy or --target-consistency");
  const target: TargetOption | null =
    targetKind === undefined
      ? null
      : {
          kind: targetKind,
          values: distinct(
            list(`--target-${targetKind}`, get(`--target-${targetKind}`) as string, (v) =>
              targetValue(`--target-${targetKind}`, v),
            ),
          ),
          confidence: given.has("--target-confidence") ? confidence(get("--target-confidence") as string) : 0,
          floor: given.has("--min-target") ? targetValue("--min-target", get("--min-target") as string) : 0,
        };
  if (target && target.floor > Math.min(...target.values)) {
    throw new UsageError(
      `--min-target (${target.floor}) is a floor: it must not be above a target (--target-${target.kind} ${target.values.join(",")})`,
    );
  }
  const signals = given.has("--signal")
    ? distinct(
        list("--signal", get("--signal") as string, (text) => {
          if (!(HALT_SIGNALS as readonly string[]).includes(text))
            throw new UsageError(`--signal takes ${HALT_SIGNALS.join(", ")}, got ${JSON.stringify(text)}`);
          return text as HaltSignal;
        }),
      )
    : null;

  const tlsCa = get("--tls-ca");
  const tlsCert = get("--tls-cert");
  const tlsKey = get("--tls-key");
  const serverName = get("--tls-server-name");
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new UsageError(`--tls-cert and --tls-key go together (got only ${tlsCert ? "--tls-cert" : "--tls-key"})`);
  }
  const anyTls = tlsCa !== undefined || tlsCert !== undefined;
  if (serverName !== undefined && !anyTls)
    throw new UsageError("--tls-server-name needs TLS: give --tls-ca or --tls-cert/--tls-key");

  const thresholds = distinct(
    list("--thresholds", get("--thresholds") ?? DEFAULT_THRESHOLDS.join(","), (t) => threshold("--thresholds", t)),
  );
  const calls = distinct(
    list("--calls", get("--calls") ?? CALL_KINDS.join(","), (c) => {
      if (!(CALL_KINDS as readonly string[]).includes(c))
        throw new UsageError(`--calls takes ${CALL_KINDS.join(", ")}, got ${JSON.stringify(c)}`);
      return c as CallKind;
    }),
  );
  const arrivalText = get("--arrival") ?? "poisson";
  if (!(ARRIVALS as readonly string[]).includes(arrivalText)) {
    throw new UsageError(`--arrival must be one of ${ARRIVALS.join(", ")}, got ${JSON.stringify(arrivalText)}`);
  }
  const arrival = arrivalText as Arrival;
  const rates =
    get("--rate") === undefined ? [] : distinct(list("--rate", get("--rate") as string, (r) => rate("--rate", r)));
  if (given.has("--arrival") && rates.length === 0)
    throw new UsageError("--arrival applies to the open loop: give --rate too");
  const concurrencyText = get("--concurrency") ?? (rates.length > 0 ? undefined : DEFAULT_CONCURRENCY.join(","));
  const concurrency =
    concurrencyText === undefined
      ? []
      : distinct(list("--concurrency", concurrencyText, (c) => positiveInteger("--concurrency", c)));
  const loads: Load[] = [
    ...concurrency.map((c): Load => ({ kind: "closed", concurrency: c })),
    ...rates.map((r): Load => ({ kind: "open", rate: r, arrival })),
  ];

  const requests = get("--requests");
  const budget: Budget =
    requests !== undefined
      ? { kind: "requests", count: positiveInteger("--requests", requests) }
      : { kind: "duration", seconds: parseSeconds("--duration", get("--duration") ?? "5s", false) };
  const warmupRequests = get("--warmup-requests");
  let warmup: Budget | null;
  if (warmupRequests !== undefined) {
    const count = Number(warmupRequests);
    if (!/^\d+$/.test(warmupRequests.trim()))
      throw new UsageError(`--warmup-requests must be a non-negative integer, got ${JSON.stringify(warmupRequests)}`);
    warmup = count === 0 ? null : { kind: "requests", count };
  } else {
    const seconds = parseSeconds("--warmup", get("--warmup") ?? "1s", true);
    warmup = seconds === 0 ? null : { kind: "duration", seconds };
  }

  const timeoutMs = positiveInteger("--timeout-ms", get("--timeout-ms") ?? "30000");
  const seedText = get("--seed") ?? "1";
  if (!/^\d+$/.test(seedText.trim()))
    throw new UsageError(`--seed must be a non-negative integer, got ${JSON.stringify(seedText)}`);

  const compareThresholds = switches.has("--compare-thresholds");
  const rules = (target ? target.values.length : thresholds.length) * (signals?.length ?? 1);
  if (compareThresholds && rules < 2) {
    const given_ = target
      ? `--target-${target.kind} ${target.values.join(",")}`
      : `--thresholds ${thresholds.join(",")}`;
    throw new UsageError(
      `--compare-thresholds needs at least 2 ${target ? "targets" : "--thresholds"}, or --signal certainty,halt; got ${given_}${signals ? ` on ${signals.join(",")}` : ""}`,
    );
  }
  const metricsUrl = get("--metrics");
  if (metricsUrl !== undefined && !/^https?:\/\/[^/]+/.test(metricsUrl))
    throw new UsageError(`--metrics must be an http:// URL, got ${JSON.stringify(metricsUrl)}`);

  const address = get("--address") ?? (env.CTM_ADDRESS || "127.0.0.1:50051");
  if (address.trim() === "") throw new UsageError("--address must not be empty");
  const token = get("--token") ?? (env.CTM_TOKEN || undefined);
  if (token !== undefined && token.trim() === "") throw new UsageError("--token must not be empty");

  return {
    kind: "run",
    options: {
      address,
      model: get("--model"),
      samples: get("--samples"),
      tls: anyTls ? { ca: tlsCa, cert: tlsCert, key: tlsKey, serverName } : null,
      token,
      connections: positiveInteger("--connections", get("--connections") ?? "1"),
      thresholds,
      signals,
      target,
      calls,
      loads,
      budget,
      warmup,
      timeoutMs,
      seed: Number(seedText),
      out: get("--out") ?? `loadtest/results/${timestamp(now)}`,
      plots: !switches.has("--no-plots"),
      progress: !switches.has("--no-progress"),
      compareThresholds,
      metricsUrl,
    },
  };
}

function parseCompare(args: string[]): Command {
  const files: string[] = [];
  let csv: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === "--help" || arg === "-h") return "help";
    if (arg === "--csv") {
      csv = args[++i];
      if (!csv) throw new UsageError("--csv needs a file name");
    } else if (arg.startsWith("-")) {
      throw new UsageError(`unknown option ${arg} for compare; see --help`);
    } else {
      files.push(arg);
    }
  }
  const [before, after] = files;
  if (files.length !== 2 || before === undefined || after === undefined) {
    throw new UsageError(`compare takes two result files (before and after), got ${files.length}`);
  }
  return { kind: "compare", options: { before, after, csv } };
}

function parseReport(args: string[]): Command {
  const files: string[] = [];
  let out: string | undefined;
  let plots = true;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === "--help" || arg === "-h") return "help";
    if (arg === "--out") {
      out = args[++i];
      if (!out) throw new UsageError("--out needs a folder");
    } else if (arg === "--no-plots") {
      plots = false;
    } else if (arg.startsWith("-")) {
      throw new UsageError(`unknown option ${arg} for report; see --help`);
    } else {
      files.push(arg);
    }
  }
  const [file] = files;
  if (files.length !== 1 || file === undefined)
    throw new UsageError(`report takes one result file, got ${files.length}`);
  return { kind: "report", options: { file, out, plots } };
}
