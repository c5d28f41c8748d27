/**
 * The rows a worker is thinking about, and the two graphs that advance them.
 *
 * A tick is a pure function of (context, state), and the tick index is not an input, so rows at any
 * tick batch together: one `tick()` advances every row by one tick. Rows join after a (batched)
 * encoder run, leave whenever their request is done, and can be parked: kept, with their state, out
 * of the tick runs until they are resumed. The batch's tensors are rebuilt only when its membership
 * changes; between changes each tick's state outputs are fed straight back as the next tick's inputs,
 * with no copying.
 */
import { performance } from "node:perf_hooks";
import * as ort from "onnxruntime-node";
import type { Manifest } from "../model/manifest.ts";
import type { ModelDefinition } from "../model/modelFolder.ts";
import { type OpenedSessions, openSessions, type SessionSettings } from "./executionProvider.ts";

/** One tick's outputs for every row, batch-major, in the order of `ids`. */
export interface TickRun {
  ids: readonly number[];
  logits: Float32Array;
  certainty: Float32Array;
  probabilities: Float32Array;
  runMs: number;
}

/** A feed tensor: its graph input name and the size of one row. */
interface Slot {
  feed: string;
  rowSize: number;
}

/** Rows to copy into a rebuilt batch: `rows[i]` of `data` becomes row `ids[i]`. */
interface RowSource {
  ids: number[];
  rows: number[];
  data: Map<string, Float32Array>;
}

const product = (dims: readonly number[]) => dims.reduce((a, b) => a * b, 1);

export class CtmBatch {
  private ids: number[] = [];
  private data = new Map<string, Float32Array>();
  private joining: RowSource[] = [];
  private leaving = new Set<number>();
  /** Parked rows' state, one row each, keyed by request id. */
  private parked = new Map<number, Map<string, Float32Array>>();
  private parking = new Set<number>();
  private resuming = new Set<number>();
  private readonly slots: Slot[];
  private readonly fetches: string[];

  private constructor(
    private readonly manifest: Manifest,
    private readonly sessions: OpenedSessions,
  ) {
    this.slots = [
      ...manifest.context.map((c) => ({ feed: c.name, rowSize: product(c.shape) })),
      ...manifest.state.map((s) => ({ feed: s.input, rowSize: product(s.shape) })),
    ];
    const { logits, certainty, probabilities } = manifest.outputs;
    this.fetches = [...manifest.state.map((s) => s.output), logits, certainty, probabilities];
  }

  /** Opens the model's sessions and checks that the graphs have the names the manifest promises. */
  static async open(model: ModelDefinition, settings: SessionSettings): Promise<CtmBatch> {
    const sessions = await openSessions(model.encoderPath, model.tickPath, settings);
    const { manifest } = model;
    try {
      for (const [graph, session, spec] of [
        ["encoder", sessions.encoder, manifest.graphs.encoder],
        ["tick", sessions.tick, manifest.graphs.tick],
      ] as const) {
        const has = (names: readonly string[], name: string, side: string) => {
          if (!names.includes(name)) {
            throw new Error(
              `${model.dir}: manifest graphs.${graph}.${side} lists "${name}" but ${spec.file} has ${side} [${names.join(", ")}]`,
            );
          }
        };
        for (const t of spec.inputs) has(session.inputNames, t.name, "inputs");
        for (const t of spec.outputs) has(session.outputNames, t.name, "outputs");
      }
    } catch (error) {
      await Promise.all([sessions.encoder.release(), sessions.tick.release()]);
      throw error;
    }
    return new CtmBatch(manifest, sessions);
  }

  get provider(): OpenedSessions["provider"] {
    return this.sessions.provider;
  }

  get fallbackReason(): string | undefined {
    return this.sessions.fallbackReason;
  }

  /**
   * Encodes new rows (one batched encoder run; `inputs` holds one input row per id, back to back).
   * They take part from the next `tick()` on. Returns the encoder run's milliseconds.
   */
  async join(ids: readonly number[], inputs: Float32Array): Promise<number> {
    const { manifest } = this;
    const inputSpec = manifest.graphs.encoder.inputs[0];
    if (!inputSpec || inputs.length !== ids.length * product(manifest.input.shape)) {
      throw new Error(
        `join: ${inputs.length} input values for ${ids.length} row(s) of [${manifest.input.shape}]. This is a bug.`,
      );
    }
    const feed = new ort.Tensor("float32", inputs, [ids.length, ...manifest.input.shape]);
    const started = performance.now();
    const out = await this.sessions.encoder.run({ [inputSpec.name]: feed });
    const runMs = performance.now() - started;
    const data = new Map<string, Float32Array>();
    for (const c of manifest.context) data.set(c.name, floats(out, c.name));
    for (const s of manifest.state) data.set(s.input, floats(out, s.init));
    this.joining.push({ ids: [...ids], rows: ids.map((_, row) => row), data });
    return runMs;
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

  /** One batched run of the tick graph over every row. */
  async tick(): Promise<TickRun> {
    if (this.joining.length > 0 || this.leaving.size > 0 || this.parking.size > 0 || this.resuming.size > 0)
      this.rebuild();
    const n = this.ids.length;
    if (n === 0) throw new Error("tick() on an empty batch. This is a bug.");
    const feeds: Record<string, ort.Tensor> = {};
    const { manifest } = this;
    for (const c of manifest.context) feeds[c.name] = this.tensor(c.name, c.shape, n);
    for (const s of manifest.state) feeds[s.input] = this.tensor(s.input, s.shape, n);
    const started = performance.now();
    const out = await this.sessions.tick.run(feeds, this.fetches);
    const runMs = performance.now() - started;
    for (const s of manifest.state) this.data.set(s.input, floats(out, s.output));
    const { logits, certainty, probabilities } = manifest.outputs;
    return {
      ids: [...this.ids],
      logits: floats(out, logits),
      certainty: floats(out, certainty),
      probabilities: floats(out, probabilities),
      runMs,
    };
  }

  async close(): Promise<void> {
    await Promise.all([this.sessions.encoder.release(), this.sessions.tick.release()]);
  }

  private tensor(feed: string, shape: readonly number[], rows: number): ort.Tensor {
    return new ort.Tensor("float32", this.data.get(feed) as Float32Array, [rows, ...shape]);
  }

  /** Survivors first, in their old order, then resumed rows, then newcomers; copies each row once. */
  private rebuild(): void {
    const { leaving, parking } = this;
    for (const id of leaving) this.parked.delete(id);
    const sources: RowSource[] = [];
    const stays: [number, number][] = [];
    this.ids.forEach((id, row) => {
      if (leaving.has(id)) return;
      if (parking.has(id)) this.parked.set(id, rowOf(this.data, row, this.slots));
      else stays.push([id, row]);
    });
    sources.push({ ids: stays.map(([id]) => id), rows: stays.map(([, row]) => row), data: this.data });
    for (const id of this.resuming) {
      const data = this.parked.get(id);
      if (!data || leaving.has(id)) continue;
      this.parked.delete(id);
      sources.push({ ids: [id], rows: [0], data });
    }
    for (const j of this.joining) {
      const kept: number[] = [];
      for (const row of j.rows) {
        const id = j.ids[row] as number;
        if (leaving.has(id)) continue;
        if (parking.has(id)) this.parked.set(id, rowOf(j.data, row, this.slots));
        else kept.push(row);
      }
      sources.push({ ids: kept.map((row) => j.ids[row] as number), rows: kept, data: j.data });
    }
    const ids = sources.flatMap((s) => s.ids);
    const data = new Map<string, Float32Array>();
    for (const { feed, rowSize } of this.slots) {
      const target = new Float32Array(ids.length * rowSize);
      let at = 0;
      for (const source of sources) {
        const from = source.data.get(feed);
        if (!from) continue;
        for (const row of source.rows) {
          target.set(from.subarray(row * rowSize, (row + 1) * rowSize), at);
          at += rowSize;
        }
      }
      data.set(feed, target);
    }
    this.ids = ids;
    this.data = data;
    this.joining = [];
    this.leaving.clear();
    this.parking.clear();
    this.resuming.clear();
  }
}

/** A copy of one row of every feed. */
function rowOf(data: Map<string, Float32Array>, row: number, slots: readonly Slot[]): Map<string, Float32Array> {
  const copy = new Map<string, Float32Array>();
  for (const { feed, rowSize } of slots) {
    copy.set(feed, (data.get(feed) as Float32Array).slice(row * rowSize, (row + 1) * rowSize));
  }
  return copy;
}

function floats(out: ort.InferenceSession.OnnxValueMapType, name: string): Float32Array {
  const value = out[name];
  if (!value || !(value.data instanceof Float32Array)) {
    throw new Error(`graph output "${name}" is missing or not float32. This is a bug.`);
  }
  return value.data;
}
