/**
 * What a model's calibration lets the server lower a request to, read from GetModel as a client would:
 * the certified grid points of one kind, signal and confidence, and the deepest rung between a target
 * and its floor (the lowest threshold there, at the highest target that has it).
 */
import type { CertifiedTargetMessage, ModelInfoMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";

export interface CertifiedLadder {
  signal: string;
  /** Certified points of the kind at the confidence, highest target first. */
  points: CertifiedTargetMessage[];
  /** The highest certified target, and the threshold certified for it. */
  top: CertifiedTargetMessage;
  /** The lowest certified target: a floor at it lets the server go as low as the calibration allows. */
  floor: number;
  /** Where a request asking for `top` with `floor` lands when lowered as far as it may go. */
  deepest: CertifiedTargetMessage;
}

export function certifiedLadder(model: ModelInfoMessage, kind: string, confidence: number): CertifiedLadder {
  const signal = model.target_signal;
  const calibrated = model.calibration?.signals.find((s) => s.signal === signal);
  const points = (calibrated?.certified ?? [])
    .filter((p) => p.kind === kind && Math.abs(p.confidence - confidence) < 1e-9)
    .sort((a, b) => b.target - a.target);
  const top = points[0];
  const last = points.at(-1);
  if (!top || !last) throw new Error(`${model.name} certifies no ${kind} target at confidence ${confidence}`);
  const below = points.filter((p) => p.target < top.target);
  const lowest = Math.min(...below.map((p) => p.threshold));
  const deepest = below.find((p) => p.threshold === lowest);
  if (!deepest || lowest >= top.threshold) {
    throw new Error(`${model.name}'s calibration certifies nothing cheaper below ${kind} ${top.target}`);
  }
  return { signal, points, top, floor: last.target, deepest };
}

/** Whether (target, threshold) is a certified point of the ladder: the guarantee stated is one that holds. */
export function isCertified(ladder: CertifiedLadder, target: number, threshold: number): boolean {
  return ladder.points.some((p) => Math.abs(p.target - target) < 1e-9 && Math.abs(p.threshold - threshold) < 1e-9);
}
