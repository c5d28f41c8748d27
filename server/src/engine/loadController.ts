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
 * The lowering is the least that is predicted to answer in time, from the server's own tick runs
 * (tickCapacity.ts) and the calibration's ticks per rung. A step of the workers costs a fixed part and a
 * part per row (the line through the runs per batch size), and each request an encoder run; arrivals at
 * the last second's rate, each thinking its rung's mean ticks, then keep the workers this busy:
 *
 *   utilisation = rate x (ticks x per-row + encoder) / workers
 *
 * and fill a batch until its steps, slowed by the fixed part, carry them: batch = rate x ticks x fixed
 * / (workers x (1 - utilisation)), up to --max-batch. A new request waits while the queue ahead of it is
 * worked through (the queued requests' ticks at that lowering, plus their encoder runs, at what a
 * request-tick has cost the workers over the last second), then runs its rung's 90th-percentile ticks
 * at one step of that batch each. A lowering fits when that is within 70% of the objective and, while
 * requests queue, the utilisation is under 80% (a server that keeps up has nothing to deepen for). A
 * refusal must be sure: it prices the queue at the cheaper of what a request-tick has cost and what it
 * costs in a full batch.
 *
 * The model leaves things out (what a request costs the main thread, encoder runs cheaper in larger
 * joins, a machine shared with other work), so the waits it predicts are scaled by what waits have
 * really been: every request predicted to wait teaches the scale, when it gets its slot, how long it
 * actually waited against the prediction. A refusal counts the scale only when it shortens the wait.
 *
 * Hysteresis keeps answers from flapping: the lowering deepens as soon as the current one no longer
 * fits, but comes back up only after it has held for HOLD_MS, and only to a level that fits within half
 * the objective at 60% utilisation.
 *
 * With the objective off (0) nothing is lowered and nothing refused here: the server queues and refuses
 * on --max-queue as it always has. A request's own deadline_ms still lowers it, at dispatch, to the
 * highest rung whose 90th-percentile ticks fit the time it has left.
 */
import { performance } from "node:perf_hooks";
import type { Rung, TargetLadder } from "./targetLadder.ts";
import type { TickCapacity } from "./tickCapacity.ts";

/** What the controller said of a request on arrival. */
export interface Admission {
  /** Set when it is refused: the latency predicted even with every flexible request at its floor. */
  refusedMs: number | undefined;
  /** When it arrived (the controller's clock), and the wait predicted for it then (0: none). */
  at: number;
  predictedWaitMs: number;
}

/** A request as the controller sees it. */
export interface LoadItem {
  ladder: TargetLadder;
  /** Epoch milliseconds of its deadline_ms; Infinity: none. */
  deadlineAt: number;
  /** Its admission, when it went through admit(): its wait teaches the controller. */
  admission?: Admission;
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

/** What a lowering is predicted to give a new request. */
interface Prediction {
  waitMs: number;
  runMs: number;
  utilisation: number;
  /** Whether requests are waiting for a batch slot now. */
  queueing: boolean;
}

/** The workers' costs, as measured, for one decision. */
interface Costs {
  /** A tick boundary: fixed + perRow x batch milliseconds. */
  fixed: number;
  perRow: number;
  encodeRowMs: number;
  /** What a request-tick has cost the workers over the last second, if they ran. */
  recentRowTickMs: number | undefined;
}

/**
 * Deepen when the prediction passes this share of the objective, or the utilisation this: the model
 * leaves out what a request costs the main thread (gRPC, decoding, encoding), which shares the cores.
 */
const LOWER_MARGIN = 0.7;
const LOWER_UTILISATION = 0.8;
/** Come back up only to a lowering predicted within these. */
const RAISE_MARGIN = 0.5;
const RAISE_UTILISATION = 0.6;
/** A lowering holds at least this long before it comes back up. */
export const HOLD_MS = 1000;
/**
 * The arrival rate is the higher of the counts over these windows: the short one sees a burst begin,
 * the long one keeps a steady rate from looking like a lull between two clumps of Poisson arrivals.
 */
const ARRIVAL_WINDOW_MS = 1000;
const BURST_WINDOW_MS = 250;
/** The demand is priced on the ladders of this many latest arrivals. */
const RECENT_ARRIVALS = 128;
/** Decisions are remade at most this often (admissions and dispatches come in bursts). */
const DECIDE_EVERY_MS = 5;
/** A deadline_ms request's 90th-percentile run must fit in this share of the time it has left. */
const DEADLINE_MARGIN = 0.8;
/**
 * The queue wait the model predicts is scaled by what waits have really been, learnt from every request
 * predicted to wait at least LEARN_FROM_MS, each moving the scale by this weight, within these bounds.
 */
const LEARN_FROM_MS = 10;
const LEARN_WEIGHT = 0.05;
const SCALE_BOUNDS = [0.2, 5] as const;

/**
 * What one decision reads, computed at most once per DECIDE_EVERY_MS (admissions come by the thousand):
 * the queue and the recent arrivals by distinct ladder (requests asking for the same target and floor
 * share one), and what they sum to at each level, as asked for.
 */
interface Snapshot {
  costs: Costs | undefined;
  /** Every lowering that changes some request's rung, ascending. */
  levels: number[];
  queued: Map<TargetLadder, number>;
  queuedCount: number;
  recent: Map<TargetLadder, number>;
  recentCount: number;
  /** Level -> the recent arrivals' mean and 90th-percentile ticks, and the queue's ticks. */
  ticks: Map<number, { mean: number; p90: number; queued: number }>;
}

function countLadders(ladders: Iterable<TargetLadder>): [Map<TargetLadder, number>, number] {
  const counts = new Map<TargetLadder, number>();
  let total = 0;
  for (const ladder of ladders) {
    counts.set(ladder, (counts.get(ladder) ?? 0) + 1);
    total++;
  }
  return [counts, total];
}

export class LoadController {
  private level = 0;
  private changedAt = Number.NEGATIVE_INFINITY;
  private decidedAt = Number.NEGATIVE_INFINITY;
  private arrivals: number[] = [];
  private recent: TargetLadder[] = [];
  private timer: NodeJS.Timeout | undefined;
  private snapshot: Snapshot = {
    costs: undefined,
    levels: [0],
    queued: new Map(),
    queuedCount: 0,
    recent: new Map(),
    recentCount: 0,
    ticks: new Map(),
  };
  /** Measured wait / predicted wait, learnt (see LEARN_WEIGHT). */
  private waitScale = 1;

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
   * A request arrives. It is refused (refusedMs set) when the queue would make it take longer than the
   * objective even with every flexible request at its floor. A request that would not wait is never
   * refused, however long it thinks: refusing it could not answer it any sooner.
   */
  admit(ladder: TargetLadder): Admission {
    const now = this.now();
    this.arrivals.push(now);
    this.recent.push(ladder);
    if (this.recent.length > 2 * RECENT_ARRIVALS) this.recent = this.recent.slice(-RECENT_ARRIVALS);
    const admitted: Admission = { refusedMs: undefined, at: now, predictedWaitMs: 0 };
    if (this.objectiveMs === 0) return admitted;
    this.decide(now);
    const { costs, levels } = this.snapshot;
    const { queued, preparing, active, workers, maxBatch } = this.view();
    if (!costs || queued.length + preparing < workers * maxBatch - active) return admitted;
    admitted.predictedWaitMs = this.predict(this.level, costs, ladder, 1).waitMs;
    // A refusal must be sure: a request-tick costs the least of what it has cost and what a full batch
    // costs, and the waits learnt only count when they are shorter than the model's.
    const full = costs.fixed / maxBatch + costs.perRow;
    const sure = { ...costs, recentRowTickMs: Math.min(costs.recentRowTickMs ?? full, full) };
    const { waitMs, runMs } = this.predict(levels.at(-1) as number, sure, ladder, Math.min(1, this.waitScale));
    if (waitMs > 0 && waitMs + runMs > this.objectiveMs) admitted.refusedMs = waitMs + runMs;
    return admitted;
  }

  /** The rung of its ladder a request starts thinking at, now that it has a batch slot. */
  rungFor(item: LoadItem): number {
    const { ladder, admission } = item;
    if (admission && admission.predictedWaitMs >= LEARN_FROM_MS) {
      const [low, high] = SCALE_BOUNDS;
      const ratio = Math.min(high, Math.max(low, (this.now() - admission.at) / admission.predictedWaitMs));
      this.waitScale += LEARN_WEIGHT * (ratio - this.waitScale);
    }
    if (ladder.length === 1) return 0;
    if (this.objectiveMs > 0) this.decide(this.now());
    let rung = this.objectiveMs > 0 ? rungIndexAt(ladder, this.level) : 0;
    const costs = Number.isFinite(item.deadlineAt) ? this.measuredCosts() : undefined;
    if (costs) {
      const left = (item.deadlineAt - Date.now()) * DEADLINE_MARGIN;
      const { active, workers, maxBatch } = this.view();
      const stepMs = costs.fixed + costs.perRow * Math.min(maxBatch, Math.ceil((active + 1) / workers));
      const runMs = (r: Rung) => r.p90Ticks * stepMs + costs.encodeRowMs;
      while (rung < ladder.length - 1 && runMs(ladder[rung] as Rung) > left) rung++;
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
    if (this.recent.length > RECENT_ARRIVALS) this.recent = this.recent.slice(-RECENT_ARRIVALS);
    const [queued, queuedCount] = countLadders(this.view().queued.map((item) => item.ladder));
    const [recent, recentCount] = countLadders(this.recent);
    this.snapshot = {
      costs: this.measuredCosts(),
      levels: [],
      queued,
      queuedCount,
      recent,
      recentCount,
      ticks: new Map(),
    };
    this.snapshot.levels = this.levels();
    const { costs } = this.snapshot;
    if (!costs) return;
    const needed = this.needed(costs, LOWER_MARGIN, LOWER_UTILISATION, true);
    if (needed > this.level) {
      this.set(needed);
    } else if (needed < this.level && now - this.changedAt >= HOLD_MS) {
      const raised = this.needed(costs, RAISE_MARGIN, RAISE_UTILISATION, false);
      if (raised < this.level) this.set(raised);
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

  private set(level: number): void {
    this.level = level;
    this.changedAt = this.now();
    this.onChange(this.state);
  }

  /**
   * The least lowering predicted to fit `margin` of the objective at `utilisation`. `whenQueueing`: the
   * utilisation counts only while requests wait for a slot. A server that keeps up has nothing to
   * deepen for; the model's utilisation, from step costs that the machine's other work moves, is what
   * decides how deep a queue needs, and how far back up a lowering may come.
   */
  private needed(costs: Costs, margin: number, utilisation: number, whenQueueing: boolean): number {
    const { levels } = this.snapshot;
    const fits = (level: number) => {
      const predicted = this.predict(level, costs, undefined, this.waitScale);
      const busy = predicted.utilisation > utilisation && (predicted.queueing || !whenQueueing);
      return predicted.waitMs + predicted.runMs <= margin * this.objectiveMs && !busy;
    };
    // Both only fall as the lowering deepens, so the least level that fits is found by halving.
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
    for (const ladder of [...this.snapshot.recent.keys(), ...this.snapshot.queued.keys()]) {
      for (const rung of ladder) gaps.add(round((ladder[0] as Rung).target - rung.target));
    }
    return [...gaps].sort((a, b) => a - b);
  }

  /** The recent arrivals' mean and 90th-percentile ticks, and the queue's ticks, at `level`. */
  private ticksAt(level: number): { mean: number; p90: number; queued: number } {
    const { ticks, recent, recentCount, queued } = this.snapshot;
    let found = ticks.get(level);
    if (!found) {
      let [sum, p90, inQueue] = [0, 0, 0];
      for (const [ladder, n] of recent) {
        const rung = rungAt(ladder, level);
        sum += n * rung.meanTicks;
        p90 += n * rung.p90Ticks;
      }
      for (const [ladder, n] of queued) inQueue += n * rungAt(ladder, level).meanTicks;
      const count = Math.max(1, recentCount);
      found = { mean: sum / count, p90: p90 / count, queued: inQueue };
      ticks.set(level, found);
    }
    return found;
  }

  /** Arrivals per millisecond (see BURST_WINDOW_MS). */
  private arrivalRate(): number {
    const since = this.now() - BURST_WINDOW_MS;
    let burst = 0;
    for (let i = this.arrivals.length - 1; i >= 0 && (this.arrivals[i] as number) >= since; i--) burst++;
    return Math.max(this.arrivals.length / ARRIVAL_WINDOW_MS, burst / BURST_WINDOW_MS);
  }

  /** The workers' costs as measured; undefined before any tick run. */
  private measuredCosts(): Costs | undefined {
    const line = this.capacity.line();
    if (!line) return undefined;
    const recent = this.capacity.recent(this.now());
    return {
      ...line,
      encodeRowMs: recent?.encodeRowMs ?? this.capacity.encodeMsPerRow,
      recentRowTickMs: recent?.rowTickMs,
    };
  }

  /** A new request at `level` (see the file comment); its own ladder's ticks, or the recent arrivals'. */
  private predict(level: number, costs: Costs, ladder: TargetLadder | undefined, waitScale: number): Prediction {
    const { queued, preparing, active, workers, maxBatch } = this.view();
    const rate = this.arrivalRate();
    const recent = this.ticksAt(level);
    const ticks = recent.mean;
    const utilisation = (rate * (ticks * costs.perRow + costs.encodeRowMs)) / workers;
    const batch =
      utilisation < 1
        ? Math.min(maxBatch, Math.max(1, (rate * ticks * costs.fixed) / (workers * (1 - utilisation))))
        : maxBatch;
    const waiting = queued.length + preparing;
    const queueing = waiting >= workers * maxBatch - active;
    let waitMs = 0;
    if (queueing) {
      // Behind a queue a request-tick costs what it has been costing: the batches really reached.
      const rowTickMs = costs.recentRowTickMs ?? costs.fixed / maxBatch + costs.perRow;
      // The queue as it was at the last decision, and whatever has joined it since priced as recent arrivals.
      const { queuedCount } = this.snapshot;
      const joined = Math.max(0, queued.length - queuedCount) + preparing;
      const stillQueued = queuedCount > 0 ? Math.min(1, queued.length / queuedCount) : 0;
      const queuedTicks = recent.queued * stillQueued + joined * ticks;
      waitMs = (waitScale * (queuedTicks * rowTickMs + waiting * costs.encodeRowMs)) / workers;
    }
    const own = ladder ? rungAt(ladder, level).p90Ticks : recent.p90;
    return { waitMs, runMs: own * (costs.fixed + costs.perRow * batch) + costs.encodeRowMs, utilisation, queueing };
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
