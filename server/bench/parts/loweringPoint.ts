/**
 * One point of the lowering benchmark (a model, an offered load, the controller on or off): what the
 * clients saw, reduced to what the table and the plots show. Accuracy is held against the guarantee
 * each answer stated: answers are grouped by the target they say they were served at, and each group's
 * delivered accuracy (the share of positions right on the labelled samples) is set beside that target.
 */
import type { CallOutcome, Sample } from "../../../tools/harness/index.ts";
import { correctFraction, percentile } from "../../../tools/harness/statistics.ts";
import type { ServerSide } from "./serverLatency.ts";

export type ControllerMode = "on" | "off";

/** The one-sided 95% normal quantile. */
const ONE_SIDED_95 = 1.645;
/** Groups with fewer answers than this are shown but not judged: one wrong maze is not a verdict. */
export const JUDGED_ANSWERS = 30;

/** The answers that stated one target, and what they delivered. */
export interface StatedGroup {
  target: number;
  answers: number;
  /** Share of positions right over the group's labelled answers. */
  accuracy: number;
  /** Standard error of `accuracy` over the group's answers (each answer's share of positions right). */
  standardError: number;
  /** Whether every answer in the group said its guarantee was met. */
  met: boolean;
}

export interface LoweringPoint {
  mode: ControllerMode;
  /** The offered load as a multiple of the measured full-depth capacity. */
  multiple: number;
  offeredRps: number;
  sent: number;
  answered: number;
  answeredRps: number;
  /** RESOURCE_EXHAUSTED. */
  refused: number;
  /** Any other failure, by gRPC status (a client deadline shows here). */
  errors: Record<string, number>;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  meanTicks: number;
  /** Answered requests that load lowered. */
  lowered: number;
  /** Share of positions right over every labelled answer; null without labels. */
  accuracy: number | null;
  stated: StatedGroup[];
  /** guaranteesHeld(stated), when the point was recorded. */
  guaranteesHeld: boolean;
  /** os.loadavg()[0] when the point started. */
  loadAverage: number;
  /** What the server itself measured over the point. */
  server: ServerSide;
}

/**
 * Every group of JUDGED_ANSWERS or more said its guarantee was met and delivered its target, up to
 * sampling error: not significantly below it (accuracy + 1.645 standard errors >= target, one-sided 95%).
 */
export function guaranteesHeld(stated: readonly StatedGroup[]): boolean {
  return stated
    .filter((g) => g.answers >= JUDGED_ANSWERS)
    .every((g) => g.met && g.accuracy + ONE_SIDED_95 * g.standardError >= g.target);
}

export class LoweringRecorder {
  private readonly latencies: number[] = [];
  private readonly errors: Record<string, number> = {};
  private ticks = 0;
  private lowered = 0;
  private correct = 0;
  private labelled = 0;
  private readonly groups = new Map<
    number,
    { answers: number; correct: number; squares: number; labelled: number; met: boolean }
  >();

  record(sample: Sample, outcome: CallOutcome): void {
    if (!outcome.ok) {
      this.errors[outcome.code] = (this.errors[outcome.code] ?? 0) + 1;
      return;
    }
    this.latencies.push(outcome.latencyMs);
    this.ticks += outcome.ticksUsed;
    const stated = outcome.guarantee;
    if (stated?.lowered) this.lowered++;
    const right = sample.label ? correctFraction(sample.label, outcome.prediction) : undefined;
    if (right !== undefined) {
      this.correct += right;
      this.labelled++;
    }
    if (stated) {
      const group = this.groups.get(stated.target) ?? { answers: 0, correct: 0, squares: 0, labelled: 0, met: true };
      group.answers++;
      group.met &&= stated.met;
      if (right !== undefined) {
        group.correct += right;
        group.squares += right * right;
        group.labelled++;
      }
      this.groups.set(stated.target, group);
    }
  }

  finish(
    point: Pick<LoweringPoint, "mode" | "multiple" | "offeredRps" | "sent" | "loadAverage" | "server">,
    elapsedS: number,
  ): LoweringPoint {
    const { RESOURCE_EXHAUSTED: refused = 0, ...errors } = this.errors;
    const latencies = this.latencies;
    const at = (p: number) => (latencies.length === 0 ? 0 : percentile(latencies, p));
    const stated = [...this.groups.entries()]
      .map(([target, g]) => {
        const accuracy = g.labelled > 0 ? g.correct / g.labelled : Number.NaN;
        const variance =
          g.labelled > 1 ? (g.squares / g.labelled - accuracy * accuracy) * (g.labelled / (g.labelled - 1)) : 0;
        return {
          target,
          answers: g.answers,
          accuracy,
          standardError: g.labelled > 0 ? Math.sqrt(Math.max(0, variance) / g.labelled) : Number.NaN,
          met: g.met,
        };
      })
      .sort((a, b) => b.target - a.target);
    return {
      ...point,
      answered: latencies.length,
      answeredRps: elapsedS > 0 ? latencies.length / elapsedS : 0,
      refused,
      errors,
      latencyMs: { p50: at(50), p90: at(90), p99: at(99), max: latencies.reduce((a, b) => Math.max(a, b), 0) },
      meanTicks: latencies.length > 0 ? this.ticks / latencies.length : 0,
      lowered: this.lowered,
      accuracy: this.labelled > 0 ? this.correct / this.labelled : null,
      stated,
      guaranteesHeld: guaranteesHeld(stated),
    };
  }
}
