/**
 * What `npm run bench:lowering`'s requests ask for: a target, a floor and the signal they halt on, read
 * from the model's calibration as GetModel reports it, and the two halt policies built from them.
 */
import {
  HALT_SIGNAL_NAMES,
  type HaltPolicyMessage,
  type ModelInfoMessage,
} from "../../src/transport/ctmV1/ctmProtocol.ts";
import type { LoweringOptions } from "./loweringOptions.ts";
import { LoweringUsageError } from "./loweringOptions.ts";
import type { LadderRung, ModelRun } from "./loweringReport.ts";

export type ChosenTargets = Omit<ModelRun, "objectiveMs" | "capacity" | "loadAverage" | "points">;

/**
 * The target, floor and ladder on `options.signal`, or on the model's target signal when none is given.
 * The ladder is the server's: from the target's grid point down, each rung cheaper, none below the floor.
 */
export function chooseTargets(
  model: ModelInfoMessage,
  options: Pick<LoweringOptions, "signal" | "target" | "floor" | "confidence">,
): ChosenTargets {
  const signal = options.signal ? HALT_SIGNAL_NAMES[options.signal] : model.target_signal;
  if (!model.halt_signals.includes(signal)) {
    throw new LoweringUsageError(
      `--signal ${options.signal}: model ${model.name} halts on ${model.halt_signals.join(", ")} only`,
    );
  }
  const certified = (model.calibration?.signals.find((s) => s.signal === signal)?.certified ?? [])
    .filter((p) => p.kind === "accuracy" && Math.abs(p.confidence - options.confidence) < 1e-9)
    .sort((a, b) => b.target - a.target);
  if (certified.length === 0) {
    const levels = [...new Set(model.calibration?.signals.flatMap((s) => s.certified.map((p) => p.confidence)))];
    throw new Error(
      `${model.name} certifies no accuracy target on ${signal} at confidence ${options.confidence}; --confidence one of ${levels.join(", ")}`,
    );
  }
  const target = options.target ?? (certified[0]?.target as number);
  const floor = options.floor ?? (certified.at(-1)?.target as number);
  const top = [...certified].reverse().find((p) => p.target >= target - 1e-12);
  const ladder: LadderRung[] = [];
  if (top) ladder.push({ target, threshold: top.threshold, meanTicks: top.mean_ticks });
  for (const p of certified) {
    const last = ladder.at(-1);
    if (p.target < target - 1e-12 && p.target >= floor - 1e-12 && (!last || p.threshold < last.threshold)) {
      ladder.push({ target: p.target, threshold: p.threshold, meanTicks: p.mean_ticks });
    }
  }
  return { name: model.name, version: model.version, signal, target, floor, confidence: options.confidence, ladder };
}

/**
 * The requests of a run: at the target without a floor (the full-depth capacity) and with it (the
 * points). Both name the signal, so that the server neither picks another nor lowers on another.
 */
export function loweringPolicies(chosen: ChosenTargets): {
  fullDepth: HaltPolicyMessage;
  flexible: HaltPolicyMessage;
  atFloor: HaltPolicyMessage;
} {
  const fullDepth: HaltPolicyMessage = {
    target_accuracy: chosen.target,
    target_confidence: chosen.confidence,
    halt_signal: chosen.signal as HaltPolicyMessage["halt_signal"],
  };
  // The cheapest a flexible request can be served: at the ladder's lowest rung, the one its floor allows.
  const lowest = chosen.ladder.at(-1)?.target ?? chosen.target;
  return {
    fullDepth,
    flexible: { ...fullDepth, min_target_accuracy: chosen.floor },
    atFloor: { ...fullDepth, target_accuracy: lowest },
  };
}
