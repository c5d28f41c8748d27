/**
 * Thinking less under overload: how far below their targets one model serves its flexible requests
 * (those with a floor) so that a request is answered within the latency objective, and when even the
 * floors cannot do that, which requests to refuse.
 *
 * The controller's one setting is the lowering, a distance in target: a flexible request starts thinking
 * at the cheapest rung of its ladder (targetLadder.ts) whose target is at most that far below its own,
 * and never below its floor. It is chosen at dispatch and kept for the whole run, so that every answer
 * halts by one certified rule and can state the guarantee that holds for it.
 *
 * The lowering is the least that is predicted to answer in time. The prediction is a fluid one, from
 * the server's own tick runs (tickCapacity.ts): a new request waits while the queue ahead of it is
 * worked through (the queued requests' expected ticks at that lowering, plus their encoder runs, at the
 * rate the workers advance a batch of that size), then thinks for its own ticks at one step per tick.
 * The demand must also fit: the arrivals of the last second, priced at that lowering, may use no more
 * than a share of what the workers can do at a full batch, or the queue would grow whatever its length.
 *
 * Hysteresis keeps answers from flapping: the lowering deepens as soon as the prediction exceeds 80% of
 * the objective, but comes back up only after it has held for HOLD_MS, and only to a level predicted to
 * answer within half the objective at a lower utilisation.
 *
 * With the objective off (0) nothing is lowered and nothing refused here: the server queues and refuses
 * on --max-queue as it always has. A request's own deadline_ms still lowers it, at dispatch, to the
 * highest rung whose 90th-percentile ticks fit the time it has left.
 */
import { performance } from "node:perf_hooks";
import type { Rung, TargetLadder } from "./targetLadder.ts";
import type { TickCapacity } from "./tickCapacity.ts";

/** A request as the controller sees it. */
export interface LoadItem {
  ladder: TargetLadder;
  /** Epoch milliseconds of its deadline_ms; Infinity: none. */
  deadlineAt: number;
}

/** The engine's state, read whenever the controller decides. */
export interface LoadView {
  /** Requests waiting for a batch slot, in order. */
  queued: readonly LoadItem[];
  /** Requests admitted whose input is still being prepared: they queue next, priced as recent arrivals. */
  preparing: number;
  /** Requests holding a batch slot. */
  active: number;
  workers: number;
  maxBatch: number;
}

/** What the controller tells the engine's observer. */
export interface LoadState {
  lowering: number;
  /** Request-ticks per second the workers advance at a full batch, as last measured; 0: not yet. */
  ticksPerSecond: number;
}

/** Deepen when the predicted latency passes this share of the objective... */
const LOWER_MARGIN = 0.8;
/** ...or the demand this share of the capacity. */
const LOWER_UTILISATION = 0.9;
/** Come back up only to a lowering predicted within these. */
const RAISE_MARGIN = 0.5;
const RAISE_UTILISATION = 0.75;
/** A lowering holds at least this long before it comes back up. */
export const HOLD_MS = 1000;
/** The arrival rate is the count over this window. */
const ARRIVAL_WINDOW_MS = 1000;
/** The demand is priced on the ladders of this many latest arrivals. */
const RECENT_ARRIVALS = 128;
/** Decisions are remade at most this often (admissions and dispatches come in bursts). */
const DECIDE_EVERY_MS = 5;
/** A deadline_ms request's 90th-percentile run must fit in this share of the time it has left. */
const DEADLINE_MARGIN = 0.8;

export class LoadController {
  private level = 0;
  private changedAt = Number.NEGATIVE_INFINITY;
  private decidedAt = Number.NEGATIVE_INFINITY;
  private arrivals: number[] = [];
  private recent: TargetLadder[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    /** --latency-objective-ms; 0: off. */
    private readonly objectiveMs: number,
    private readonly capacity: TickCapacity,
    private readonly view: () => LoadView,
    private readonly onChange: (state: LoadState) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** How far below its target a flexible request starts thinking now (its floor permitting). */
  get lowering(): number {
    return this.level;
  }

  get state(): LoadState {
    const { workers, maxBatch } = this.view();
    return { lowering: this.level, ticksPerSecond: workers * this.capacity.ticksPerSecond(maxBatch) };
  }

  /**
   * A request arrives. Returns undefined to admit it, or the latency it is predicted to take even with
   * every flexible request at its floor, when the queue makes that longer than the objective: it is
   * refused. A request that would not wait is never refused, however long it thinks: refusing it could
   * not answer it any sooner.
   */
  admit(ladder: TargetLadder): number | undefined {
    const now = this.now();
    this.arrivals.push(now);
    this.recent.push(ladder);
    if (this.recent.length > RECENT_ARRIVALS) this.recent = this.recent.slice(-RECENT_ARRIVALS);
    if (this.objectiveMs === 0) return undefined;
    this.decide(now);
    // Optimistic about batches not yet seen: a refusal must be sure the floors do not fit.
    const { waitMs, runMs } = this.predict(this.deepest(), ladder, true);
    return waitMs > 0 && waitMs + runMs > this.objectiveMs ? waitMs + runMs : undefined;
  }

  /** The rung of its ladder a request starts thinking at, now that it has a batch slot. */
  rungFor(item: LoadItem): number {
    const { ladder } = item;
    if (ladder.length === 1) return 0;
    if (this.objectiveMs > 0) this.decide(this.now());
    let rung = this.objectiveMs > 0 ? rungIndexAt(ladder, this.level) : 0;
    if (Number.isFinite(item.deadlineAt)) {
      const left = (item.deadlineAt - Date.now()) * DEADLINE_MARGIN;
      const { active, workers, maxBatch } = this.view();
      const stepMs = this.capacity.stepMs(Math.min(maxBatch, Math.ceil((active + 1) / workers)));
      const runMs = (r: Rung) => r.p90Ticks * stepMs + this.capacity.encodeMsPerRow;
      if (stepMs > 0) while (rung < ladder.length - 1 && runMs(ladder[rung] as Rung) > left) rung++;
    }
    return rung;
  }

  /** Stops the timer that brings the lowering back up while nothing arrives. */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Deepens the lowering at once when needed; brings it back up after HOLD_MS (see the file comment). */
  private decide(now: number, force = false): void {
    if (!force && now - this.decidedAt < DECIDE_EVERY_MS) return;
    this.decidedAt = now;
    const cutoff = now - ARRIVAL_WINDOW_MS;
    if ((this.arrivals[0] ?? now) < cutoff) this.arrivals = this.arrivals.filter((at) => at >= cutoff);
    const needed = this.needed(LOWER_MARGIN, LOWER_UTILISATION);
    if (needed > this.level) {
      this.set(needed, now);
    } else if (needed < this.level && now - this.changedAt >= HOLD_MS) {
      const raised = this.needed(RAISE_MARGIN, RAISE_UTILISATION);
      if (raised < this.level) this.set(raised, now);
    }
    // While lowered, look again even if nothing arrives, so that the lowering comes back up.
    if (this.level > 0 && !this.timer) {
      this.timer = setTimeout(
        () => {
          this.timer = undefined;
          this.decide(this.now(), true);
        },
        Math.max(DECIDE_EVERY_MS, HOLD_MS / 4),
      );
      this.timer.unref();
    }
  }

  private set(level: number, now: number): void {
    this.level = level;
    this.changedAt = now;
    this.onChange(this.state);
  }

  /** The least lowering predicted to answer within `margin` of the objective at `utilisation`. */
  private needed(margin: number, utilisation: number): number {
    const levels = this.levels();
    const fits = (level: number) => {
      const { waitMs, runMs } = this.predict(level, undefined, false);
      return waitMs + runMs <= margin * this.objectiveMs && this.demand(level) <= utilisation;
    };
    // Both sides only fall as the lowering deepens, so the least level that fits is found by halving.
    let low = 0;
    let high = levels.length - 1;
    if (!fits(levels[high] as number)) return levels[high] as number;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (fits(levels[middle] as number)) high = middle;
      else low = middle + 1;
    }
    return levels[low] as number;
  }

  /** Every lowering that changes some request's rung: the gaps between targets on the known ladders. */
  private levels(): number[] {
    const gaps = new Set<number>([0]);
    const add = (ladder: TargetLadder) => {
      for (const rung of ladder) gaps.add(round((ladder[0] as Rung).target - rung.target));
    };
    for (const ladder of this.recent) add(ladder);
    for (const item of this.view().queued) add(item.ladder);
    return [...gaps].sort((a, b) => a - b);
  }

  private deepest(): number {
    return this.levels().at(-1) as number;
  }

  /**
   * Milliseconds a new request would take at `level`: waiting while the queue ahead is worked through,
   * then running its own 90th-percentile ticks (of `ladder`, or the recent arrivals' on average).
   * Both 0 before any tick run.
   */
  private predict(
    level: number,
    ladder: TargetLadder | undefined,
    optimistic: boolean,
  ): { waitMs: number; runMs: number } {
    const { queued, preparing, active, workers, maxBatch } = this.view();
    const waiting = queued.length + preparing;
    const batch = Math.min(maxBatch, Math.ceil((active + waiting + 1) / workers));
    const stepMs = this.capacity.stepMs(batch, optimistic);
    if (stepMs === 0) return { waitMs: 0, runMs: 0 };
    const rowTickMs = stepMs / batch;
    const encodeMs = this.capacity.encodeMsPerRow;
    let waitMs = 0;
    if (waiting >= workers * maxBatch - active) {
      let ticks = preparing * mean(this.recent.map((recent) => rungAt(recent, level).meanTicks));
      for (const item of queued) ticks += rungAt(item.ladder, level).meanTicks;
      waitMs = (ticks * rowTickMs + waiting * encodeMs) / workers;
    }
    const own = ladder
      ? rungAt(ladder, level).p90Ticks
      : mean(this.recent.map((recent) => rungAt(recent, level).p90Ticks));
    return { waitMs, runMs: own * stepMs + encodeMs };
  }

  /** The last second's arrivals at `level` as a share of what the workers do at a full batch. */
  private demand(level: number): number {
    const { workers, maxBatch } = this.view();
    const ticksPerMs = (workers * this.capacity.ticksPerSecond(maxBatch)) / 1000;
    if (ticksPerMs === 0 || this.arrivals.length === 0) return 0;
    const encodeTicks = this.capacity.encodeMsPerRow * (ticksPerMs / workers);
    const perRequest = mean(this.recent.map((ladder) => rungAt(ladder, level).meanTicks)) + encodeTicks;
    return ((this.arrivals.length / ARRIVAL_WINDOW_MS) * perRequest) / ticksPerMs;
  }
}

/** The index of the cheapest rung at most `level` below the ladder's own target. */
export function rungIndexAt(ladder: TargetLadder, level: number): number {
  const top = (ladder[0] as Rung).target;
  let index = 0;
  while (index + 1 < ladder.length && round(top - (ladder[index + 1] as Rung).target) <= level) index++;
  return index;
}

function rungAt(ladder: TargetLadder, level: number): Rung {
  return ladder[rungIndexAt(ladder, level)] as Rung;
}

/** Target gaps are differences of decimal grid values: rounded, so that 0.95 - 0.85 equals 0.1. */
function round(value: number): number {
  return Math.round(value * 1e6) / 1e6;
}

function mean(values: number[]): number {
  return values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;
}
