/**
 * `npm run bench`'s command line. Parsed before anything starts, so that --help and a mistyped option
 * answer at once instead of after a benchmark's worth of minutes.
 */
import { parseArgs } from "node:util";

export const BENCH_USAGE = `Usage: npm run bench -- [options]

Runs the three measurements of docs/benchmarks.md side by side (several minutes on 2 vCPUs).

  --rounds <n>        rounds of alternating measurements (default 3)
  --requests <n>      sequential requests per side per round, benchmark 1 (default 30)
  --seconds <s>       seconds of saturating load per server per round (default 6)
  --callers <n>       concurrent callers of the load generator (default 64)
  --threads <n>       onnxruntime intra-op threads, passed to both servers (default: theirs)
  --worker-nice <n>   --worker-nice passed to both servers (default: theirs)
  --out <file>        results JSON (default out/bench.json); the summary table goes to stdout
  --help              this text`;

export interface BenchOptions {
  rounds: number;
  requests: number;
  seconds: number;
  callers: number;
  /** undefined: the servers' default. */
  threads: number | undefined;
  /** undefined: the servers' default. */
  workerNice: number | undefined;
  out: string;
}

export class BenchUsageError extends Error {}

export function parseBenchOptions(argv: string[]): BenchOptions | "help" {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        rounds: { type: "string" },
        requests: { type: "string" },
        seconds: { type: "string" },
        callers: { type: "string" },
        threads: { type: "string" },
        "worker-nice": { type: "string" },
        out: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    throw new BenchUsageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help) return "help";
  const number = (name: string, fallback: number, min: number, integer: boolean): number => {
    const raw = values[name];
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (raw === "" || !Number.isFinite(value) || value < min || (integer && !Number.isInteger(value)))
      throw new BenchUsageError(
        `--${name} needs ${integer ? "an integer" : "a number"} >= ${min}, got ${JSON.stringify(raw)}`,
      );
    return value;
  };
  return {
    rounds: number("rounds", 3, 1, true),
    requests: number("requests", 30, 1, true),
    seconds: number("seconds", 6, 0.1, false),
    callers: number("callers", 64, 1, true),
    threads: values.threads === undefined ? undefined : number("threads", 1, 1, true),
    workerNice: values["worker-nice"] === undefined ? undefined : number("worker-nice", 0, 0, true),
    out: typeof values.out === "string" && values.out ? values.out : "out/bench.json",
  };
}
