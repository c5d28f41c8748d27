/**
 * Command-line client: watch a CTM think about one image, tick by tick.
 *
 *   npm run classify -- digit.png [--threshold 0.9] [--stream] [--json] [--plot ticks.png]
 *
 * Prints a table of the per-tick top class, its probability, the certainty and, for a model with a
 * halting head, its halt signal (or JSON lines with --json), then the answer and why the model stopped.
 * --help lists every option.
 */
import { mkdirSync, readFileSync } from "node:fs";
import { dirname } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { callerPath } from "../../server/src/cli/callerPath.ts";
import { describeConnectionFailure } from "../../server/src/cli/connectionFailure.ts";
import { type CtmClient, createCtmClient } from "../../server/src/client/ctmClient.ts";
import {
  type ClassifyRequestMessage,
  type ClassifyResponseMessage,
  type GuaranteeMessage,
  HALT_SIGNAL_NAMES,
  type HaltPolicyMessage,
  type HaltSignalName,
  type ModelInfoMessage,
  type TickUpdateMessage,
} from "../../server/src/transport/ctmV1/ctmProtocol.ts";
import { isMazeModel, plotRoute } from "../harness/plot/routePlot.ts";
import { renderTracePlot } from "../harness/plot/tracePlot.ts";
import { shrinkForSending } from "./imageShrink.ts";

const USAGE = `Usage: npm run classify -- <image | tensor.json> [options]

  <image>                 PNG, JPEG, WebP, GIF or TIFF file
  <tensor.json>           {"shape": [...], "values": [...]}: a raw, already preprocessed input
  --address <host:port>   server (default $CTM_ADDRESS or 127.0.0.1:50051)
  --model <name>          model to ask (default: the only loaded model)
  --threshold <t>         certainty threshold in (0, 1] (server default 0.9)
  --halt-threshold <t>    instead: a threshold on the halting head's signal, in (0, 1] (models with
                          a halting head only)
  --signal <s>            the signal to halt on: certainty or halt (default: the one the threshold
                          names; for a target, the model's best, halt when it has a calibrated head)
  --target-accuracy <a>   instead of a threshold: the accuracy wanted, in (0, 1], certified by the
                          model's calibration (the answer says whether the guarantee was met)
  --target-consistency <c>  instead: agreement wanted with the answer after all ticks, in (0, 1]
  --target-confidence <p> confidence of that guarantee (server default 0.95)
  --min-target-accuracy <f>  with --target-accuracy: the floor an overloaded server may lower the
                          target to (with the lower target's certified guarantee) instead of queueing
  --min-target-consistency <f>  the same with --target-consistency
  --min-ticks <n>         never halt before this tick
  --max-ticks <n>         never run more ticks than this
  --patience <n>          halt when the top class has been the same for n ticks
  --deadline-ms <n>       halt with the best answer so far after n milliseconds
  --top-k <k>             classes to report per tick
  --stream                print each tick as the server computes it (ClassifyStream)
  --json                  JSON lines instead of a table
  --plot <file.png>       save a plot of class probabilities, certainty and halt over ticks
  --timeout-ms <n>        gRPC deadline for the whole call (default 30000)
  --no-shrink             send a large image as it is (by default one over 1 MB or 1024 pixels a
                          side is scaled down first: the model reads far fewer pixels)`;

class UsageError extends Error {}

interface Options {
  file: string;
  address: string;
  model: string | undefined;
  policy: HaltPolicyMessage;
  topK: number;
  stream: boolean;
  json: boolean;
  plot: string | undefined;
  timeoutMs: number;
  shrink: boolean;
}

function parseArgs(argv: string[]): Options | "help" {
  const options: Options = {
    file: "",
    address: process.env.CTM_ADDRESS || "127.0.0.1:50051",
    model: undefined,
    policy: {},
    topK: 0,
    stream: false,
    json: false,
    plot: undefined,
    timeoutMs: 30000,
    shrink: true,
  };
  const number = (flag: string, value: string | undefined, integer: boolean): number => {
    const n = Number(value);
    if (value === undefined || value === "" || !Number.isFinite(n) || (integer && (!Number.isInteger(n) || n < 0))) {
      throw new UsageError(
        `${flag} needs ${integer ? "a non-negative integer" : "a number"}, got ${JSON.stringify(value ?? "")}`,
      );
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    const value = () => argv[++i];
    switch (arg) {
      case "--help":
      case "-h":
        return "help";
      case "--address":
        options.address = value() ?? "";
        break;
      case "--model":
        options.model = value();
        break;
      case "--threshold":
        options.policy.certainty_threshold = number(arg, value(), false);
        break;
      case "--halt-threshold":
        options.policy.halt_threshold = number(arg, value(), false);
        break;
      case "--signal": {
        const signal = value();
        if (signal !== "certainty" && signal !== "halt")
          throw new UsageError(`--signal must be certainty or halt, got ${JSON.stringify(signal ?? "")}`);
        options.policy.halt_signal = HALT_SIGNAL_NAMES[signal];
        break;
      }
      case "--target-accuracy":
        options.policy.target_accuracy = number(arg, value(), false);
        break;
      case "--target-consistency":
        options.policy.target_consistency = number(arg, value(), false);
        break;
      case "--target-confidence":
        options.policy.target_confidence = number(arg, value(), false);
        break;
      case "--min-target-accuracy":
        options.policy.min_target_accuracy = number(arg, value(), false);
        break;
      case "--min-target-consistency":
        options.policy.min_target_consistency = number(arg, value(), false);
        break;
      case "--min-ticks":
        options.policy.min_ticks = number(arg, value(), true);
        break;
      case "--max-ticks":
        options.policy.max_ticks = number(arg, value(), true);
        break;
      case "--patience":
        options.policy.patience = number(arg, value(), true);
        break;
      case "--deadline-ms":
        options.policy.deadline_ms = number(arg, value(), true);
        break;
      case "--top-k":
        options.topK = number(arg, value(), true);
        break;
      case "--timeout-ms":
        options.timeoutMs = number(arg, value(), true);
        break;
      case "--stream":
        options.stream = true;
        break;
      case "--no-shrink":
        options.shrink = false;
        break;
      case "--json":
        options.json = true;
        break;
      case "--plot":
        options.plot = value();
        if (!options.plot) throw new UsageError("--plot needs a file name");
        break;
      default:
        if (arg.startsWith("-")) throw new UsageError(`unknown option ${arg}`);
        if (options.file) throw new UsageError(`one input file at a time (got ${options.file} and ${arg})`);
        options.file = arg;
    }
  }
  if (!options.file) throw new UsageError("no input file given");
  return options;
}

async function pickModel(client: CtmClient, wanted: string | undefined, deadline: Date): Promise<ModelInfoMessage> {
  if (wanted) return client.GetModel({ name: wanted }, { deadline });
  const { models } = await client.ListModels({}, { deadline });
  const [only] = models;
  if (models.length !== 1 || !only) {
    throw new UsageError(
      `the server has ${models.length} models (${models.map((m) => m.name).join(", ")}); choose one with --model`,
    );
  }
  return only;
}

function readInput(file: string): Pick<ClassifyRequestMessage, "image" | "tensor"> {
  const bytes = readFileSync(file);
  if (!file.toLowerCase().endsWith(".json")) return { image: { data: bytes } };
  const tensor = JSON.parse(bytes.toString("utf8")) as { shape?: number[]; values?: number[] };
  if (!Array.isArray(tensor.shape) || !Array.isArray(tensor.values))
    throw new UsageError(`${file} must hold {"shape": [...], "values": [...]}`);
  return { tensor: { shape: tensor.shape, values: tensor.values } };
}

// ---------------------------------------------------------------- output
const BAR = 24;

/**
 * proto-loader names the member set of a oneof under the oneof's own name (halt_value: "halt" in the
 * messages printed here), and of proto3 `optional` fields under "_field"; neither is part of the message.
 */
const json = (message: object) =>
  JSON.stringify(message, (key, value) => (key.startsWith("_") || key === "halt_value" ? undefined : value));

/** The value of the signal a message was halted on. */
const signalValue = (message: { certainty: number; halt?: number; halt_signal: HaltSignalName }) =>
  message.halt_signal === "HALT_SIGNAL_HALT" ? (message.halt ?? 0) : message.certainty;
const signalName = (name: HaltSignalName) => (name === "HALT_SIGNAL_HALT" ? "halt" : "certainty");

function bar(value: number, threshold: number): string {
  const filled = Math.round(value * BAR);
  const mark = Math.min(BAR - 1, Math.round(threshold * BAR));
  return Array.from({ length: BAR }, (_, i) => (i === mark ? "|" : i < filled ? "#" : ".")).join("");
}

function topOf(message: TickUpdateMessage | ClassifyResponseMessage): string {
  const [top] = message.top_k;
  if (top) return `${top.label.padEnd(8)} ${top.probability.toFixed(3)}`;
  return message.positions.map((p) => p.label).join(" ");
}

/** A row per tick: top class, certainty, halt (models with a halting head), and a bar of the signal halted on. */
function tableRow(update: TickUpdateMessage, threshold: number, halting: boolean): string {
  // Under its header: certainty's column is as wide as the word.
  const certainty = halting ? update.certainty.toFixed(3).padEnd(9) : update.certainty.toFixed(3);
  const halt = halting ? `  ${update.halt === undefined ? "  -  " : update.halt.toFixed(3)}` : "";
  return `${String(update.tick).padStart(4)}  ${topOf(update).padEnd(14)}  ${certainty}${halt}  ${bar(signalValue(update), threshold)}`;
}

const REASONS: Record<string, string> = {
  HALT_REASON_THRESHOLD: "reached the threshold",
  HALT_REASON_PATIENCE: "the top class stopped changing (patience)",
  HALT_REASON_MAX_TICKS: "max ticks reached without reaching the threshold",
  HALT_REASON_DEADLINE: "the deadline passed",
};

function summary(result: ClassifyResponseMessage): string {
  const answer = result.top_k[0]
    ? `${result.top_k[0].label} (p ${result.top_k[0].probability.toFixed(3)})`
    : result.positions.map((p) => p.label).join(" ");
  const halt = result.halt === undefined ? "" : `, halt ${result.halt.toFixed(3)}`;
  const signal = signalName(result.halt_signal);
  const reason = REASONS[result.halt_reason] ?? result.halt_reason;
  return [
    `answer: ${answer}, certainty ${result.certainty.toFixed(3)}${halt}, from tick ${result.answer_tick}`,
    `halted after ${result.ticks_used} tick(s): ${result.halt_reason === "HALT_REASON_THRESHOLD" ? `${signal} ${reason}` : reason} (threshold ${result.threshold_used.toFixed(3)} on ${signal})`,
    ...(result.guarantee ? [guaranteeLine(result.guarantee)] : []),
  ].join("\n");
}

function guaranteeLine(g: GuaranteeMessage): string {
  const promise = `${g.kind} >= ${g.target} with confidence ${g.confidence}`;
  // A server from before floors says nothing of them: it never lowers.
  const lowered = g.lowered_by_load
    ? `\nlowered by load: asked for ${g.kind} >= ${g.requested_target} (threshold ${g.requested_threshold}), floor ${g.min_target}`
    : "";
  if (g.met) {
    return `guarantee met: ${promise} (certified on ${g.calibration_count} calibration items; ${g.kind === "accuracy" ? "error" : "disagreement"} <= ${g.risk_bound.toFixed(4)})${lowered}`;
  }
  return `guarantee NOT met: ${promise}: ${g.note}${lowered}`;
}

async function plot(
  path: string,
  model: ModelInfoMessage,
  trace: TickUpdateMessage[],
  result: ClassifyResponseMessage,
): Promise<void> {
  const leading = result.top_k.slice(0, 3).map((c) => c.index);
  const classes = leading.map((index) => ({
    label: model.labels[index] ?? String(index),
    values: trace.map((t) => t.top_k.find((c) => c.index === index)?.probability ?? 0),
  }));
  if (classes.length === 0) {
    classes.push({
      label: "mean top-1 over positions",
      values: trace.map(
        (t) => t.positions.reduce((sum, p) => sum + p.probability, 0) / Math.max(1, t.positions.length),
      ),
    });
  }
  const halting = trace.every((t) => t.halt !== undefined);
  await renderTracePlot(
    {
      title: `${model.name}/${model.version}: ${summary(result).split("\n")[0]}`,
      certainty: trace.map((t) => t.certainty),
      ...(halting && { halt: trace.map((t) => t.halt as number) }),
      signal: signalName(result.halt_signal),
      classes,
      threshold: result.threshold_used,
      answerTick: result.answer_tick,
    },
    path,
  );
}

// ---------------------------------------------------------------- main
async function run(options: Options): Promise<void> {
  const client = createCtmClient(options.address, grpc.credentials.createInsecure());
  try {
    const deadline = new Date(Date.now() + options.timeoutMs);
    const model = await pickModel(client, options.model, deadline);
    const classes = model.labels.length;
    const input = readInput(callerPath(options.file));
    if (input.image?.data && options.shrink && model.input.image) {
      const { width, height } = model.input.image;
      const shrunk = await shrinkForSending(Buffer.from(input.image.data), Math.max(width, height));
      if (shrunk.note) process.stderr.write(`classify: ${options.file} is ${shrunk.note}\n`);
      input.image = { data: shrunk.data };
    }
    const request: ClassifyRequestMessage = {
      model: model.name,
      ...input,
      halt_policy: options.policy,
      // The plot follows the leading classes through every tick, so it needs all of them.
      top_k: options.plot && model.output_shape.length === 1 ? classes : options.topK,
      include_trace: !options.stream,
    };
    // 0 means "not set" (the server default) for both, as in the contract.
    const threshold =
      options.policy.certainty_threshold ||
      options.policy.halt_threshold ||
      model.default_policy.certainty_threshold ||
      0.9;
    const halting = model.halt_signals.includes("HALT_SIGNAL_HALT");
    const print = (line: string) => process.stdout.write(`${line}\n`);
    // The table's header waits for the first row, so that a refused call prints the error alone.
    let headed = options.json;
    const row = (line: string) => {
      if (!headed) {
        print(`${model.name}/${model.version}  ${options.file}  (${options.stream ? "streaming" : "unary"})`);
        const columns = `${(model.output_shape.length === 1 ? "top-1    p" : "per-position").padEnd(14)}  certainty${halting ? "  halt" : ""}`;
        print(`tick  ${columns}`);
        headed = true;
      }
      print(line);
    };

    const trace: TickUpdateMessage[] = [];
    let result: ClassifyResponseMessage | undefined;
    if (options.stream) {
      for await (const update of client.ClassifyStream(request, { deadline })) {
        trace.push(update);
        row(options.json ? json(update) : tableRow(update, threshold, halting));
        if (update.final && update.result) result = update.result;
      }
    } else {
      const response = await client.Classify(request, { deadline });
      trace.push(...response.trace);
      result = response;
      for (const update of response.trace)
        row(options.json ? json(update) : tableRow(update, response.threshold_used, halting));
      if (options.json) print(json({ ...response, trace: undefined }));
    }
    if (!result) throw new Error("the server ended the call without a final result");
    if (!options.json) print(summary(result));
    if (options.plot) {
      const plotFile = callerPath(options.plot);
      mkdirSync(dirname(plotFile), { recursive: true });
      if (isMazeModel(model.output_shape, model.labels) && model.input.image) {
        // A maze model's answer is a route: draw it over the maze (every tick with --stream).
        await plotRoute(plotFile, model, readFileSync(callerPath(options.file)), trace, result, options.stream);
      } else {
        await plot(plotFile, model, trace, result);
      }
      if (!options.json) print(`plot saved to ${options.plot}`);
    }
  } finally {
    client.close();
  }
}

let address = "";
try {
  const options = parseArgs(process.argv.slice(2));
  if (options !== "help") address = options.address;
  if (options === "help") {
    console.log(USAGE);
  } else {
    await run(options);
  }
} catch (error) {
  if (error instanceof UsageError) {
    console.error(`classify: ${error.message}\n\n${USAGE}`);
    process.exit(2);
  }
  const status = error as Partial<grpc.ServiceError>;
  if (typeof status.code === "number") {
    const unreachable = describeConnectionFailure(status, address, {
      address: "--address",
      tls: null,
      usingTls: false,
    });
    console.error(`classify: ${grpc.status[status.code]}: ${unreachable ?? status.details}`);
  } else {
    console.error(`classify: ${error instanceof Error ? error.message : String(error)}`);
  }
  process.exit(1);
}
