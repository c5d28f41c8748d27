/**
 * The rows a worker is thinking about, and the two graphs that advance them.
 *
 * A tick is a pure function of (context, state), and the tick index is not an input, so rows at any
 * tick batch together: one `tick()` advances every row by one tick. Rows join after a (batched)
 * encoder run, leave whenever their request is done, and can be parked: kept, with their state, out
 * of the tick runs until they are resumed.
 *
 * Every tensor lives in a buffer with room for `capacity` rows, and onnxruntime reads the first n rows
 * and writes its outputs into preallocated buffers, so a tick allocates and copies nothing: each state
 * tensor has two buffers that swap roles every tick. Rows that leave are replaced by the last row
 * (one row copied per tensor); rows that join are appended.
 */
import { performance } from "node:perf_hooks";
import * as ort from "onnxruntime-node";
import type { Manifest } from "../model/manifest.ts";
import type { ModelDefinition } from "../model/modelFolder.ts";
import { type OpenedSessions, openSessions, type SessionSettings } from "./executionProvider.ts";
import { checkGraphContract } from "./graphContract.ts";

/**
 * One tick's outputs for every row, batch-major, in the order of `ids`. The arrays are views into the
 * batch's buffers and are overwritten by the next tick: copy what must outlive it.
 */
export interface TickRun {
  ids: readonly number[];
  logits: Float32Array;
  certainty: Float32Array;
  probabilities: Float32Array;
  /** [rows]: present when the model has a halting head (manifest outputs.halt). */
  halt?: Float32Array;
  /** [rows, heads x tokens]: present when the model has an attention output. */
  attention?: Float32Array;
  runMs: number;
}

/** A tensor fed to the tick graph, `rowSize` floats per row. */
interface Feed {
  name: string;
  rowSize: number;
  shape: readonly number[];
  /** The buffer fed to the next tick. */
  current: Float32Array;
  /** State only: the buffer the next tick writes its output into, and that output's name. */
  next?: Float32Array;
  output?: string;
}

interface Output {
  name: string;
  rowSize: number;
  /** Without the batch dimension, as the graph declares it. */
  shape: readonly number[];
  buffer: Float32Array;
}

/** Rows waiting to be appended: row i of every feed's data belongs to ids[i]. */
interface Pending {
  ids: number[];
  data: Map<string, Float32Array>;
}

const product = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);
const INITIAL_CAPACITY = 16;
/**
 * Input values one encoder run takes at most (4 MiB of float32): 6 rows of 224x224 RGB, 1337 MNIST
 * digits. A CNN backbone's intermediates grow with its input, and so does its run: 64 ImageNet rows
 * at once would hold gigabytes in onnxruntime's arena for good and stall every active row's ticks
 * for the minutes that run takes.
 */
const ENCODER_INPUT_VALUES = 1 << 20;

export interface BatchLimits {
  /** Most rows per encoder run (default: as many as ENCODER_INPUT_VALUES input values allow). */
  encoderRows?: number;
}

export class CtmBatch {
  /** Most rows one encoder run takes: join() runs larger groups in parts, and the scheduler joins no more per tick. */
  readonly encoderRows: number;
  private ids: number[] = [];
  private capacity = INITIAL_CAPACITY;
  private readonly feeds: Feed[];
  /**
   * attention, when the model has it, is always fetched into its own preallocated buffer: onnxruntime
   * computes those weights for the tick anyway, and a fetch list that changed with the requests would
   * rebuild the run arguments. Copying them anywhere is the scheduler's, and only for rows that asked.
   */
  private readonly outputs: {
    logits: Output;
    certainty: Output;
    probabilities: Output;
    halt?: Output;
    attention?: Output;
  };
  private pending: Pending[] = [];
  private readonly leaving = new Set<number>();
  private readonly parking = new Set<number>();
  /** Parked rows' feeds, one row each, by request id. */
  private readonly parked = new Map<number, Map<string, Float32Array>>();
  private readonly resuming = new Set<number>();
  /**
   * Tensors over the first n rows of each buffer, reused while n stays the same: a batch that does not
   * change builds none (building them, with onnxruntime's checks, cost as much as a small tick).
   */
  private readonly views = new WeakMap<Float32Array, { rows: number; tensor: ort.Tensor }>();
  /**
   * The last tick run's feeds and fetches while the rows stay the same: the next run needs only the
   * state entries swapped, so a steady tick builds neither records nor tensors.
   */
  private runArgs: { feeds: Record<string, ort.Tensor>; fetches: Record<string, ort.Tensor> } | undefined;

  private constructor(
    private readonly manifest: Manifest,
    private readonly sessions: OpenedSessions,
    limits: BatchLimits,
  ) {
    this.encoderRows =
      limits.encoderRows ?? Math.max(1, Math.floor(ENCODER_INPUT_VALUES / product(manifest.input.shape)));
    const room = (rowSize: number) => new Float32Array(this.capacity * rowSize);
    this.feeds = [
      ...manifest.context.map((c) => ({
        name: c.name,
        rowSize: product(c.shape),
        shape: c.shape,
        current: room(product(c.shape)),
      })),
      ...manifest.state.map((s) => ({
        name: s.input,
        rowSize: product(s.shape),
        shape: s.shape,
        current: room(product(s.shape)),
        next: room(product(s.shape)),
        output: s.output,
      })),
    ];
    const output = (name: string): Output => {
      const declared = manifest.graphs.tick.outputs.find((o) => o.name === name);
      if (!declared) throw new Error(`tick output "${name}" is not declared. This is a bug.`);
      const shape = declared.shape.slice(1) as number[];
      return { name, rowSize: product(shape), shape, buffer: room(product(shape)) };
    };
    this.outputs = {
      logits: output(manifest.outputs.logits),
      certainty: output(manifest.outputs.certainty),
      probabilities: output(manifest.outputs.probabilities),
      ...(manifest.outputs.halt !== undefined && { halt: output(manifest.outputs.halt) }),
      ...(manifest.attention && { attention: output(manifest.attention.output) }),
    };
  }

  /** Opens the model's sessions and checks that the graphs keep the manifest's contract (graphContract.ts). */
  static async open(model: ModelDefinition, settings: SessionSettings, limits: BatchLimits = {}): Promise<CtmBatch> {
    const sessions = await openSessions(model.encoderPath, model.tickPath, settings);
    try {
      checkGraphContract(model, sessions);
    } catch (error) {
      await Promise.all([sessions.encoder.release(), sessions.tick.release()]);
      throw error;
    }
    return new CtmBatch(model.manifest, sessions, limits);
  }

  get provider(): OpenedSessions["provider"] {
    return this.sessions.provider;
  }

  get fallbackReason(): string | undefined {
    return this.sessions.fallbackReason;
  }

  /**
   * Encodes new rows (batched encoder runs of at most `encoderRows` rows; `inputs` holds one input row
   * per id, back to back). They take part from the next `tick()` on. Returns the encoder runs' milliseconds.
   */
  async join(ids: readonly number[], inputs: Float32Array): Promise<number> {
    const { manifest } = this;
    const rowSize = product(manifest.input.shape);
    if (!manifest.graphs.encoder.inputs[0] || inputs.length !== ids.length * rowSize) {
      throw new Error(
        `join: ${inputs.length} input values for ${ids.length} row(s) of [${manifest.input.shape}]. This is a bug.`,
      );
    }
    let runMs = 0;
    for (let from = 0; from < ids.length; from += this.encoderRows) {
      const to = Math.min(ids.length, from + this.encoderRows);
      const { data, ms } = await this.encode(to - from, inputs.subarray(from * rowSize, to * rowSize));
      this.pending.push({ ids: ids.slice(from, to), data });
      runMs += ms;
    }
    return runMs;
  }

  private async encode(rows: number, inputs: Float32Array): Promise<{ data: Map<string, Float32Array>; ms: number }> {
    const { manifest } = this;
    const inputSpec = manifest.graphs.encoder.inputs[0] as { name: string };
    const feed = new ort.Tensor("float32", inputs, [rows, ...manifest.input.shape]);
    const started = performance.now();
    const out = await this.sessions.encoder.run({ [inputSpec.name]: feed });
    const ms = performance.now() - started;
    const data = new Map<string, Float32Array>();
    for (const c of manifest.context) data.set(c.name, floats(out, c.name));
    for (const s of manifest.state) data.set(s.input, floats(out, s.init));
    return { data, ms };
  }

  /**
   * Runs `rows` blank rows through both graphs once and drops them, as Triton's model warm-up does.
   * onnxruntime's CPU arena keeps the largest intermediates it has needed, the batch's buffers grow by
   * doubling and the allocators keep what they handed out, so without this the server's memory creeps
   * up in steps whenever a larger batch than before happens to form, and the request that forms it
   * pays for the growth. Measured with server/bench/probes/batchMemory.ts: warmed up to 64 rows, later batches
   * of up to 16 rows add under 2 MiB instead of 11, and the growth up to full batches of 64 is halved.
   * The encoder runs once, at the most rows it will ever take (`encoderRows`); the other rows reuse its
   * outputs, since a tick's cost does not depend on the values (at ImageNet size, 64 encoder rows would
   * add minutes to the start-up).
   */
  async warmUp(rows: number): Promise<void> {
    if (this.ids.length > 0 || this.pending.length > 0) throw new Error("warmUp() on a batch in use. This is a bug.");
    const ids = Array.from({ length: rows }, (_, i) => -1 - i);
    const encoded = Math.min(rows, this.encoderRows);
    await this.join(ids.slice(0, encoded), new Float32Array(encoded * product(this.manifest.input.shape)));
    const data = (this.pending[0] as Pending).data;
    for (let from = encoded; from < rows; from += encoded) {
      this.pending.push({ ids: ids.slice(from, Math.min(rows, from + encoded)), data });
    }
    await this.tick();
    this.leave(ids);
    if (this.applyChanges()) this.runArgs = undefined;
  }

  /** These rows leave before the next tick, parked or not. */
  leave(ids: Iterable<number>): void {
    for (const id of ids) this.leaving.add(id);
  }

  /** These rows sit out the tick runs, keeping their state, until resumed. */
  park(ids: Iterable<number>): void {
    for (const id of ids) {
      this.resuming.delete(id);
      if (!this.parked.has(id)) this.parking.add(id);
    }
  }

  resume(ids: Iterable<number>): void {
    for (const id of ids) {
      this.parking.delete(id);
      if (this.parked.has(id)) this.resuming.add(id);
    }
  }

  /** One batched run of the tick graph over every row that is not parked. */
  async tick(): Promise<TickRun> {
    if (this.applyChanges()) this.runArgs = undefined;
    const n = this.ids.length;
    if (n === 0) throw new Error("tick() on an empty batch. This is a bug.");
    this.runArgs ??= this.buildRunArgs(n);
    const { feeds, fetches } = this.runArgs;
    const started = performance.now();
    await this.sessions.tick.run(feeds, fetches);
    const runMs = performance.now() - started;
    for (const f of this.feeds) {
      if (!f.next || !f.output) continue;
      [f.current, f.next] = [f.next, f.current];
      [feeds[f.name], fetches[f.output]] = [fetches[f.output] as ort.Tensor, feeds[f.name] as ort.Tensor];
    }
    const { logits, certainty, probabilities, halt, attention } = this.outputs;
    return {
      ids: [...this.ids],
      logits: logits.buffer.subarray(0, n * logits.rowSize),
      certainty: certainty.buffer.subarray(0, n),
      probabilities: probabilities.buffer.subarray(0, n * probabilities.rowSize),
      ...(halt && { halt: halt.buffer.subarray(0, n) }),
      ...(attention && { attention: attention.buffer.subarray(0, n * attention.rowSize) }),
      runMs,
    };
  }

  async close(): Promise<void> {
    await Promise.all([this.sessions.encoder.release(), this.sessions.tick.release()]);
  }

  private buildRunArgs(n: number): NonNullable<CtmBatch["runArgs"]> {
    const feeds: Record<string, ort.Tensor> = {};
    const fetches: Record<string, ort.Tensor> = {};
    for (const f of this.feeds) {
      feeds[f.name] = this.view(f.current, n, f.rowSize, f.shape);
      if (f.next && f.output) fetches[f.output] = this.view(f.next, n, f.rowSize, f.shape);
    }
    for (const o of Object.values(this.outputs)) fetches[o.name] = this.view(o.buffer, n, o.rowSize, o.shape);
    return { feeds, fetches };
  }

  /**
   * Leaving and parking rows go, resumed and new rows come; each moved row is copied once. Returns
   * whether the rows changed.
   */
  private applyChanges(): boolean {
    const { leaving, parking } = this;
    if (leaving.size === 0 && parking.size === 0 && this.resuming.size === 0 && this.pending.length === 0) return false;
    if (leaving.size > 0 || parking.size > 0) {
      // From the highest index down, so that the last row, moved into each hole, always stays.
      const going = this.ids.flatMap((id, row) => (leaving.has(id) || parking.has(id) ? [row] : [])).reverse();
      for (const row of going) {
        const id = this.ids[row] as number;
        if (parking.has(id) && !leaving.has(id)) this.parked.set(id, this.copyRow(row));
        const last = this.ids.length - 1;
        if (row !== last) {
          for (const f of this.feeds) f.current.copyWithin(row * f.rowSize, last * f.rowSize, (last + 1) * f.rowSize);
          this.ids[row] = this.ids[last] as number;
        }
        this.ids.pop();
      }
    }
    for (const id of leaving) this.parked.delete(id);

    const incoming: Pending[] = [];
    for (const id of this.resuming) {
      const data = this.parked.get(id);
      if (!data) continue;
      this.parked.delete(id);
      incoming.push({ ids: [id], data });
    }
    incoming.push(...this.pending);
    for (const source of incoming) {
      source.ids.forEach((id, row) => {
        if (leaving.has(id)) return;
        if (parking.has(id)) {
          this.parked.set(id, new Map(this.feeds.map((f) => [f.name, rowOf(source.data.get(f.name), row, f.rowSize)])));
          return;
        }
        this.append(id, (f) => rowOf(source.data.get(f.name), row, f.rowSize));
      });
    }
    this.pending = [];
    leaving.clear();
    parking.clear();
    this.resuming.clear();
    return true;
  }

  private view(buffer: Float32Array, n: number, rowSize: number, shape: readonly number[]): ort.Tensor {
    const cached = this.views.get(buffer);
    if (cached?.rows === n) return cached.tensor;
    const tensor = new ort.Tensor("float32", buffer.subarray(0, n * rowSize), [n, ...shape]);
    this.views.set(buffer, { rows: n, tensor });
    return tensor;
  }

  private append(id: number, row: (feed: Feed) => Float32Array): void {
    if (this.ids.length === this.capacity) this.grow();
    const at = this.ids.length;
    for (const f of this.feeds) f.current.set(row(f), at * f.rowSize);
    this.ids.push(id);
  }

  /** Twice the room: a rare full copy, after which the batch fits again. */
  private grow(): void {
    this.capacity *= 2;
    this.runArgs = undefined;
    const used = this.ids.length;
    for (const f of this.feeds) {
      const current = new Float32Array(this.capacity * f.rowSize);
      current.set(f.current.subarray(0, used * f.rowSize));
      f.current = current;
      if (f.next) f.next = new Float32Array(this.capacity * f.rowSize);
    }
    for (const o of Object.values(this.outputs)) o.buffer = new Float32Array(this.capacity * o.rowSize);
  }

  private copyRow(row: number): Map<string, Float32Array> {
    return new Map(this.feeds.map((f) => [f.name, f.current.slice(row * f.rowSize, (row + 1) * f.rowSize)]));
  }
}

function rowOf(data: Float32Array | undefined, row: number, rowSize: number): Float32Array {
  if (!data) throw new Error("a row source lacks a feed. This is a bug.");
  return data.subarray(row * rowSize, (row + 1) * rowSize);
}

function floats(out: ort.InferenceSession.OnnxValueMapType, name: string): Float32Array {
  const value = out[name];
  if (!value || !(value.data instanceof Float32Array)) {
    throw new Error(`graph output "${name}" is missing or not float32. This is a bug.`);
  }
  return value.data;
}
