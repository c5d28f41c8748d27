/**
 * `npm run bench:lowering`'s command line, checked before any server starts: a mistyped option
 * answers at once, not after minutes of load.
 */
import { parseArgs } from "node:util";

export const LOWERING_USAGE = `Usage: npm run bench:lowering -- [options]

Measures thinking less under overload (docs/benchmarks.md, "Overload: thinking less"). Per model, two
servers side by side, one with --latency-objective-ms and one without, take the same open-loop Poisson
arrivals at multiples of the model's full-depth capacity (measured first, closed loop, on the same
servers), point by point, alternating which goes first. Every request gives a floor.

  --models <a,b>        models in models/ (default maze-ctm,mnist-ctm)
  --loads <x,...>       offered loads as multiples of the full-depth capacity (default 0.5,1,1.5,2,3)
  --seconds <s>         seconds of arrivals per point (default 8)
  --objective-ms <ms>   the controlled server's --latency-objective-ms (default 250)
  --target <t>          target_accuracy of every request (default: the model's highest certified at
                        --confidence on its target signal)
  --floor <f>           min_target_accuracy (default: the lowest target its calibration certifies)
  --confidence <c>      target_confidence (default 0.95)
  --signal <s>          certainty or halt: the signal every request halts on, and its certified targets
                        and ladder (default: the model's target signal, GetModel's target_signal, which
                        its calibration names)
  --capacity-seconds <s>  seconds of the closed-loop capacity measurement (default 6)
  --callers <n>         callers of the capacity measurement (default 128)
  --max-batch <n>       --max-batch of both servers (default 16: on a 2-vCPU machine shared with this
                        load generator, at 64 handling a thousand requests a second saturates the
                        cores before the thinking does, and no lowering can help with that)
  --max-queue <n>       --max-queue of both servers (default 256)
  --inputs <kind>       tensor: the samples preprocessed here, as the server would (default), so that
                        the servers spend their time thinking; image: the PNGs, decoded by the servers
  --seed <n>            seed of the arrival times and the sample draw (default 1)
  --out <file>          result JSON (default docs/results/lowering.json)
  --plots <dir>         where lowering-<model>.png go (default docs/img)
  --report <file>       print the table and draw the plots of an earlier result, measuring nothing
  --help                this text`;

export interface LoweringOptions {
  models: string[];
  loads: number[];
  seconds: number;
  objectiveMs: number;
  target: number | undefined;
  floor: number | undefined;
  confidence: number;
  /** undefined: the model's target signal, as GetModel reports it. */
  signal: "certainty" | "halt" | undefined;
  capacitySeconds: number;
  callers: number;
  maxBatch: number;
  maxQueue: number;
  inputs: "tensor" | "image";
  seed: number;
  out: string;
  plots: string;
  report: string | undefined;
}

export class LoweringUsageError extends Error {}

function inputsKind(value: string): LoweringOptions["inputs"] {
  if (value !== "tensor" && value !== "image") {
    throw new LoweringUsageError(`--inputs must be tensor or image, got ${JSON.stringify(value)}`);
  }
  return value;
}

function signalName(value: string | undefined): LoweringOptions["signal"] {
  if (value === undefined) return undefined;
  if (value !== "certainty" && value !== "halt") {
    throw new LoweringUsageError(`--signal must be certainty or halt, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function parseLoweringOptions(argv: string[]): LoweringOptions | "help" {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        models: { type: "string" },
        loads: { type: "string" },
        seconds: { type: "string" },
        "objective-ms": { type: "string" },
        target: { type: "string" },
        floor: { type: "string" },
        confidence: { type: "string" },
        signal: { type: "string" },
        "capacity-seconds": { type: "string" },
        callers: { type: "string" },
        "max-batch": { type: "string" },
        "max-queue": { type: "string" },
        seed: { type: "string" },
        inputs: { type: "string" },
        out: { type: "string" },
        plots: { type: "string" },
        report: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    throw new LoweringUsageError((error as Error).message);
  }
  if (values.help) return "help";
  const text = (name: string, fallback: string) => (values[name] as string | undefined) ?? fallback;
  const number = (name: string, fallback: string, min: number, max: number, integer = false) => {
    const raw = text(name, fallback);
    const value = Number(raw);
    if (
      raw.trim() === "" ||
      !Number.isFinite(value) ||
      value < min ||
      value > max ||
      (integer && !Number.isInteger(value))
    ) {
      throw new LoweringUsageError(
        `--${name} must be ${integer ? "an integer" : "a number"} in [${min}, ${max}], got ${JSON.stringify(raw)}`,
      );
    }
    return value;
  };
  const fraction = (name: string) => (values[name] === undefined ? undefined : number(name, "", 0.001, 1));
  const loads = text("loads", "0.5,1,1.5,2,3")
    .split(",")
    .map((load) => {
      const value = Number(load);
      if (load.trim() === "" || !(value > 0 && value <= 100)) {
        throw new LoweringUsageError(`--loads must be multiples in (0, 100], got ${JSON.stringify(load)}`);
      }
      return value;
    });
  const models = text("models", "maze-ctm,mnist-ctm")
    .split(",")
    .map((m) => m.trim())
    .filter(Boolean);
  if (models.length === 0) throw new LoweringUsageError("--models must name at least one model");
  const options: LoweringOptions = {
    models,
    loads,
    seconds: number("seconds", "8", 1, 3600),
    objectiveMs: number("objective-ms", "250", 1, 3_600_000, true),
    target: fraction("target"),
    floor: fraction("floor"),
    confidence: number("confidence", "0.95", 0.001, 0.999),
    signal: signalName(values.signal as string | undefined),
    capacitySeconds: number("capacity-seconds", "6", 1, 3600),
    callers: number("callers", "128", 1, 100_000, true),
    maxBatch: number("max-batch", "16", 1, 4096, true),
    maxQueue: number("max-queue", "256", 0, 1_000_000, true),
    inputs: inputsKind(text("inputs", "tensor")),
    seed: number("seed", "1", 0, 2 ** 31, true),
    out: text("out", "docs/results/lowering.json"),
    plots: text("plots", "docs/img"),
    report: values.report as string | undefined,
  };
  if (options.target !== undefined && options.floor !== undefined && options.floor > options.target) {
    throw new LoweringUsageError(`--floor (${options.floor}) must not be above --target (${options.target})`);
  }
  return options;
}
