/**
 * Runs a whole load test against a live server: find the model and its samples, then for every point
 * of the plan warm up, measure, and record. Returns the result; writing it is resultFiles.ts's job.
 */
import { setMaxListeners } from "node:events";
import * as grpc from "@grpc/grpc-js";
import type { HaltSignal } from "../../server/src/model/calibration.ts";
import {
  HALT_SIGNAL_NAMES,
  type HaltPolicyMessage,
  type ModelInfoMessage,
} from "../../server/src/transport/ctmV1/ctmProtocol.ts";
import {
  type CallOutcome,
  CtmConnection,
  type Drive,
  type DriveOptions,
  driveClosedLoop,
  driveOpenLoop,
  loadSamples,
  makeCaller,
  type Sample,
  type SampleSet,
} from "../../tools/harness/index.ts";
import { loadAverage, machineRecord } from "../../tools/harness/machine.ts";
import { type CalibrationReference, type LoadtestResult, type PointResult, RESULT_SCHEMA } from "./loadtestResult.ts";
import type { RunOptions, TargetOption } from "./options.ts";
import { PointRecorder } from "./pointRecorder.ts";
import type { ProgressBar } from "./progressBar.ts";
import { graphTimeBetween, readGraphCounters } from "./serverGraphTime.ts";
import { type Budget, budgetLabel, loadLabel, type PointSpec, planPoints, type Rule, ruleLabel } from "./sweepPlan.ts";

export interface SweepHooks {
  progress: ProgressBar;
  /** Aborting stops the current point (it is dropped) and ends the run with what was measured. */
  signal: AbortSignal;
  /** Recorded in the result as the command that produced it. */
  argv: string[];
}

const CONNECT_TIMEOUT_MS = 10_000;
const PROGRESS_INTERVAL_MS = 200;

/** The model's calibration of the rule's signal at its threshold, when its grid has it. */
function calibrationAt(model: ModelInfoMessage, rule: Rule): CalibrationReference | null {
  const signal = HALT_SIGNAL_NAMES[rule.signal ?? "certainty"];
  // Servers from before halting signals list certainty's thresholds only, at the top level.
  const thresholds =
    model.calibration?.signals?.find((s) => s.signal === signal)?.thresholds ??
    (signal === "HALT_SIGNAL_CERTAINTY" ? model.calibration?.thresholds : undefined);
  const point = thresholds?.find((p) => Math.abs(p.threshold - rule.threshold) < 1e-9);
  if (!model.calibration || !point) return null;
  return {
    split: model.calibration.split,
    accuracy: point.accuracy,
    meanTicks: point.mean_ticks,
    reachedFraction: point.reached_fraction,
  };
}

function resolveSamples(options: RunOptions, model: ModelInfoMessage): SampleSet {
  const path = options.samples ?? `models/${model.name}/${model.version}`;
  try {
    return loadSamples(path);
  } catch (error) {
    const hint = options.samples ? "" : " (the default for this model; give --samples)";
    throw new Error(`${(error as Error).message}${hint}`);
  }
}

/** Round-robin from the first sample, so a request budget that is a multiple of the set sends each equally. */
function roundRobin(samples: readonly Sample[]): () => Sample {
  let next = 0;
  return () => samples[next++ % samples.length] as Sample;
}

function drive(spec: PointSpec, seed: number, options: DriveOptions<Sample, CallOutcome>): Promise<Drive> {
  return spec.load.kind === "closed"
    ? driveClosedLoop(spec.load.concurrency, options)
    : driveOpenLoop(spec.load.rate, spec.load.arrival, seed, options);
}

function describePoint(point: PointResult): string {
  const errors = point.requests - point.ok;
  const accuracy = point.accuracy === null ? "" : ` acc ${(point.accuracy * 100).toFixed(1)}%`;
  return (
    `${point.call} ${loadLabel(point.load)} t=${ruleLabel(point)}: ${point.ok} ok${errors ? `, ${errors} errors` : ""}, ` +
    `${point.throughputRps.toFixed(1)}/s, p50 ${point.latencyMs.p50.toFixed(1)} ms, p99 ${point.latencyMs.p99.toFixed(1)} ms, ` +
    `ticks ${point.ticks.mean.toFixed(2)}${accuracy}`
  );
}

export async function runSweep(options: RunOptions, hooks: SweepHooks): Promise<LoadtestResult> {
  const { progress } = hooks;
  // Every call in flight listens for the stop; an open loop can have thousands in flight.
  const stop = new AbortController();
  setMaxListeners(0, stop.signal);
  const onAbort = () => stop.abort();
  hooks.signal.addEventListener("abort", onAbort, { once: true });
  if (hooks.signal.aborted) stop.abort();
  const { signal } = stop;
  const startedAt = new Date().toISOString();
  const machine = machineRecord();
  const connection = CtmConnection.open(options);
  try {
    let model: ModelInfoMessage;
    try {
      model = await connection.pickModel(options.model, new Date(Date.now() + CONNECT_TIMEOUT_MS));
    } catch (error) {
      const status = error as Partial<grpc.ServiceError>;
      if (typeof status.code !== "number") throw error;
      throw new Error(`cannot ask ${options.address} for its model: ${grpc.status[status.code]}: ${status.details}`);
    }
    const sampleSet = resolveSamples(options, model);
    const maxTicks = model.default_policy.max_ticks || model.trained_ticks;
    checkSignals(options, model);
    const rules = options.target
      ? await resolveTargets(connection, model, sampleSet, options, (line) => progress.log(line))
      : (options.signals ?? ["certainty"]).flatMap((signal) =>
          options.thresholds.map((threshold): Rule => ({ signal, threshold })),
        );
    const plan = planPoints(options.calls, options.loads, rules);
    const perPoint = (budget: Budget | null) => (budget?.kind === "duration" ? budget.seconds : 0);
    progress.log(
      `${model.name}/${model.version} at ${options.address} (${model.provider}), ${sampleSet.samples.length} samples ` +
        `from ${sampleSet.source}; ${plan.length} points of ${budgetLabel(options.budget)}` +
        (options.warmup ? ` after ${budgetLabel(options.warmup)} of warm-up` : "") +
        (options.budget.kind === "duration"
          ? `: about ${Math.ceil(plan.length * (perPoint(options.budget) + perPoint(options.warmup)))} s`
          : ""),
    );

    const points: PointResult[] = [];
    for (const [index, spec] of plan.entries()) {
      if (signal.aborted) break;
      const caller = makeCaller(connection, {
        model: model.name,
        version: model.version,
        call: spec.call,
        threshold: spec.threshold,
        policy: haltPolicyOf(spec, options),
        timeoutMs: options.timeoutMs,
      });
      const label = `${spec.call} ${loadLabel(spec.load)} t=${ruleLabel(spec)}`;
      const phase = async (budget: Budget, recorder: PointRecorder | null) => {
        let done = 0;
        const started = performance.now();
        const timer = setInterval(() => {
          const fraction =
            budget.kind === "duration" ? (performance.now() - started) / 1000 / budget.seconds : done / budget.count;
          const detail = recorder ? `${done} done, p50 ${recorder.p50Ms.toFixed(1)} ms` : `${done} done`;
          progress.update(index, recorder ? "measure" : "warm-up", label, Math.min(1, fraction), detail);
        }, PROGRESS_INTERVAL_MS);
        try {
          return await drive(spec, options.seed, {
            budget,
            call: caller,
            nextSample: roundRobin(sampleSet.samples),
            onOutcome: (sample, outcome) => {
              done++;
              recorder?.record(sample, outcome);
            },
            signal,
          });
        } finally {
          clearInterval(timer);
        }
      };
      if (options.warmup) await phase(options.warmup, null);
      if (signal.aborted) break;
      const recorder = new PointRecorder(spec, maxTicks, calibrationAt(model, spec));
      const graphBefore = options.metricsUrl ? await readGraphCounters(options.metricsUrl) : undefined;
      const cpuBefore = process.cpuUsage();
      const measured = await phase(options.budget, recorder);
      const cpu = process.cpuUsage(cpuBefore);
      if (signal.aborted) break;
      const clientCpuCores = measured.elapsedS > 0 ? (cpu.user + cpu.system) / 1e6 / measured.elapsedS : 0;
      const point = recorder.finish(measured.elapsedS, measured.offeredRps, clientCpuCores);
      if (graphBefore && options.metricsUrl)
        point.graph = graphTimeBetween(graphBefore, await readGraphCounters(options.metricsUrl));
      points.push(point);
      progress.log(`[${index + 1}/${plan.length}] ${describePoint(point)}`);
    }
    progress.done();

    return {
      schema: RESULT_SCHEMA,
      startedAt,
      finishedAt: new Date().toISOString(),
      interrupted: points.length < plan.length,
      command: hooks.argv,
      environment: {
        node: machine.node,
        platform: machine.platform,
        arch: machine.arch,
        cpus: machine.cores,
        cpuModel: machine.cpu,
        loadAverage: { start: machine.loadAverageAtStart, end: loadAverage() },
      },
      target: {
        address: options.address,
        tls: options.tls !== null,
        token: options.token !== undefined,
        connections: options.connections,
      },
      model: {
        name: model.name,
        version: model.version,
        provider: model.provider,
        trainedTicks: model.trained_ticks,
        maxTicks,
      },
      samples: { source: sampleSet.source, count: sampleSet.samples.length, labelled: sampleSet.labelled },
      settings: {
        calls: options.calls,
        thresholds: [...new Set(rules.map((r) => r.threshold))],
        signals: [...new Set(rules.map((r) => r.signal ?? "certainty"))],
        ...(options.target ? { targets: rules } : {}),
        loads: options.loads,
        budget: options.budget,
        warmup: options.warmup,
        timeoutMs: options.timeoutMs,
        seed: options.seed,
        compareThresholds: options.compareThresholds,
      },
      points,
    };
  } finally {
    hooks.signal.removeEventListener("abort", onAbort);
    connection.close();
  }
}

/** What a point's requests send: its threshold in its signal's field, or its target on its signal. */
function haltPolicyOf(rule: Rule, options: RunOptions): HaltPolicyMessage {
  const signal: HaltSignal = rule.signal ?? "certainty";
  if (rule.target) {
    const policy: HaltPolicyMessage = {
      [`target_${rule.target.kind}`]: rule.target.value,
      halt_signal: HALT_SIGNAL_NAMES[signal],
    };
    if (options.target && options.target.confidence > 0) policy.target_confidence = options.target.confidence;
    if (options.target && options.target.floor > 0) policy[`min_target_${rule.target.kind}`] = options.target.floor;
    return policy;
  }
  // certainty_threshold alone for certainty, as servers from before halting signals read it.
  return signal === "halt" ? { halt_threshold: rule.threshold } : { certainty_threshold: rule.threshold };
}

/** --signal halt on a model without a halting head is refused before any point runs. */
function checkSignals(options: RunOptions, model: ModelInfoMessage): void {
  const has = model.halt_signals ?? ["HALT_SIGNAL_CERTAINTY"];
  for (const signal of options.signals ?? []) {
    if (!has.includes(HALT_SIGNAL_NAMES[signal])) {
      throw new Error(
        `--signal ${signal}: model ${model.name} has no halting head (it halts on ${has.map((s) => s.replace("HALT_SIGNAL_", "").toLowerCase()).join(", ")} only)`,
      );
    }
  }
}

/**
 * A target resolves to one threshold per model, calibration and signal, so one call per target and
 * signal before the sweep says which: the points are then measured, and labelled, at the threshold
 * the server really uses. Without --signal the server picks the signal (the model's best), and the
 * rule records the one it used.
 */
async function resolveTargets(
  connection: CtmConnection,
  model: ModelInfoMessage,
  sampleSet: SampleSet,
  options: RunOptions,
  log: (line: string) => void,
): Promise<Rule[]> {
  const option = options.target as TargetOption;
  const [sample] = sampleSet.samples;
  if (!sample) throw new Error("no samples to ask the server for the target's threshold with");
  const rules: Rule[] = [];
  for (const signal of options.signals ?? [undefined]) {
    for (const value of option.values) {
      const policy: HaltPolicyMessage = { [`target_${option.kind}`]: value };
      if (option.confidence > 0) policy.target_confidence = option.confidence;
      if (signal) policy.halt_signal = HALT_SIGNAL_NAMES[signal];
      let response: Awaited<ReturnType<CtmConnection["classify"]>>;
      try {
        response = await connection.classify(
          { model: model.name, version: model.version, ...sample.input, halt_policy: policy, top_k: 1 },
          { deadline: Date.now() + options.timeoutMs },
        );
      } catch (error) {
        const status = error as Partial<grpc.ServiceError>;
        if (typeof status.code !== "number") throw error;
        throw new Error(
          `the server refused target_${option.kind} ${value}${signal ? ` on ${signal}` : ""}: ${grpc.status[status.code]}: ${status.details}`,
        );
      }
      const guarantee = response.guarantee;
      const met = guarantee?.met ?? false;
      // A server from before halting signals says no signal: it halted on certainty.
      const used: HaltSignal = response.halt_signal === "HALT_SIGNAL_HALT" ? "halt" : "certainty";
      const promise = guarantee
        ? `${guarantee.kind} >= ${guarantee.target} with confidence ${guarantee.confidence}`
        : `target_${option.kind} ${value}`;
      log(
        `target: ${promise} on ${used} -> threshold ${response.threshold_used} (guarantee ${met ? "met" : `not met: ${guarantee?.note ?? "no guarantee"}`})`,
      );
      rules.push({
        signal: used,
        threshold: response.threshold_used,
        target: { kind: option.kind, value, confidence: option.confidence, met },
      });
    }
  }
  return rules;
}
