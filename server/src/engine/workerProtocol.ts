/**
 * Messages between a model engine (main thread) and its scheduler workers. Float32Arrays travel as
 * transferred buffers, never copied. The main thread sends arrays of ToWorker messages (everything
 * it had for the worker in one event-loop task); the worker sends one FromWorker per postMessage.
 */
import type { ModelDefinition } from "../model/modelFolder.ts";
import type { SessionSettings } from "../runtime/executionProvider.ts";
import type { HaltPolicy, HaltReason } from "./haltPolicy.ts";

export interface WorkerData {
  model: ModelDefinition;
  session: SessionSettings;
  /** Nice steps below the event loop for this thread and its intra-op threads. */
  niceness: number;
  /** Rows of the warm-up run before the worker reports ready: the engine's max-batch. */
  warmUpRows: number;
}

// ---------------------------------------------------------------- main -> worker
export interface AdmitMessage {
  type: "admit";
  id: number;
  /** One input row, already preprocessed. */
  input: Float32Array;
  policy: HaltPolicy;
  /** Epoch milliseconds after which the request halts with DEADLINE; Infinity for none. */
  deadlineAt: number;
  /** Report every tick (streams and traces), not just the answer. */
  streamTicks: boolean;
  /** Its streamed ticks carry the attention weights (TickRows.attention). */
  attention: boolean;
  /** Most ticks the request may run ahead of the ticks its reader has taken; 0: not paced. */
  readAhead: number;
}

export type ToWorker =
  | AdmitMessage
  | { type: "cancel"; id: number }
  /** Readers have taken these requests' ticks up to the given tick: [id, tick] pairs. */
  | { type: "credit"; credits: [number, number][] }
  | { type: "stop" };

// ---------------------------------------------------------------- worker -> main
/** Per-tick outputs of the rows that asked for them; row i's values are at [i * width, (i + 1) * width). */
export interface TickRows {
  ids: number[];
  ticks: number[];
  certainty: Float32Array;
  /** Row i's halting-head output: present when the model has one. */
  halt?: Float32Array;
  logits: Float32Array;
  probabilities: Float32Array;
  /**
   * Row i's attention weights at [i * attentionWidth, ...): present only when some row asked for them,
   * and then only those rows' are filled in, so that no one else's ticks pay for the copy.
   */
  attention?: Float32Array;
}

export type Finished =
  | {
      id: number;
      outcome: "halted";
      reason: HaltReason;
      ticksUsed: number;
      answerTick: number;
      /** The answer tick's signals; halt only for a model with a halting head. */
      certainty: number;
      halt?: number;
      logits: Float32Array;
      probabilities: Float32Array;
    }
  | { id: number; outcome: "cancelled"; ticksUsed: number }
  /** Its halt_policy deadline had passed before its first tick: nothing was run. */
  | { id: number; outcome: "expired"; ticksUsed: 0 }
  | { id: number; outcome: "failed"; ticksUsed: number; message: string };

/** One tick boundary's graph runs, for metrics. */
export interface StepRun {
  /** Rows advanced by the tick run (0 when the step only encoded or removed requests). */
  batchSize: number;
  joined: number;
  encodeMs: number;
  tickMs: number;
  /**
   * The worker's wall time for this boundary: the graph runs plus the copies, halting checks and
   * messages around them (whatever is not a graph run is the server's own cost per tick).
   */
  stepMs: number;
}

/**
 * What the main thread needs from the worker: finished requests, ticks to stream, and the graph runs
 * since the last report. Sent only when there is a tick to stream or a request finished (or the
 * runs have waited a while): a message per tick would wake the main thread, and on a busy machine
 * hand it the core the next tick needs.
 */
export interface StepMessage {
  type: "step";
  runs: StepRun[];
  ticks: TickRows | undefined;
  finished: Finished[];
}

export type FromWorker =
  | { type: "ready"; provider: "cpu" | "cuda"; fallbackReason?: string }
  | { type: "failed"; message: string }
  | StepMessage
  | { type: "stopped" };
