/**
 * Turns one tick's flat outputs into what a caller reads: the top-k classes for a [classes] output, or
 * every position's top class for a [positions, classes] output (e.g. parity's [16, 2]).
 */
import { invalidArgument } from "./serverError.ts";

export interface ClassScore {
  index: number;
  label: string;
  probability: number;
}

export interface PositionPrediction {
  position: number;
  index: number;
  label: string;
  probability: number;
}

export interface Prediction {
  /** Single-position outputs only; most probable first, ties by class index. */
  topK: ClassScore[];
  /** Multi-position outputs only. */
  positions: PositionPrediction[];
}

export interface OutputLayout {
  /** [classes] or [positions, classes]. */
  shape: readonly number[];
  labels: readonly string[];
}

export const DEFAULT_TOP_K = 5;

/** A request's top_k, 0 meaning min(DEFAULT_TOP_K, classes); INVALID_ARGUMENT beyond the classes. */
export function resolveTopK(k: number, layout: OutputLayout, model: string): number {
  const classes = layout.labels.length;
  const fallback = Math.min(DEFAULT_TOP_K, classes);
  if (!Number.isInteger(k) || k < 0 || k > classes) {
    throw invalidArgument(`top_k must be in [0, ${classes}] for model ${model} (0 means ${fallback}), got ${k}`);
  }
  return k === 0 ? fallback : k;
}

export function positionsOf(layout: OutputLayout): number {
  return layout.shape.length === 2 ? (layout.shape[0] as number) : 1;
}

export function describePrediction(probabilities: Float32Array, layout: OutputLayout, k: number): Prediction {
  const classes = layout.labels.length;
  if (layout.shape.length === 1) {
    const order = Array.from({ length: classes }, (_, i) => i).sort(
      (a, b) => (probabilities[b] as number) - (probabilities[a] as number) || a - b,
    );
    const topK = order.slice(0, k).map((index) => ({
      index,
      label: layout.labels[index] as string,
      probability: probabilities[index] as number,
    }));
    return { topK, positions: [] };
  }
  const positions: PositionPrediction[] = [];
  for (let position = 0; position < positionsOf(layout); position++) {
    const index = argmax(probabilities, position * classes, classes);
    positions.push({
      position,
      index,
      label: layout.labels[index] as string,
      probability: probabilities[position * classes + index] as number,
    });
  }
  return { topK: [], positions };
}

/**
 * The top class of every position, as one comparable key (what patience watches). Computed from the
 * logits, not the probabilities: float32 softmax can round two close classes to a tie.
 */
export function topClassKey(logits: Float32Array, layout: OutputLayout): string {
  const classes = layout.labels.length;
  const positions = positionsOf(layout);
  if (positions === 1) return String(argmax(logits, 0, classes));
  const top: number[] = [];
  for (let p = 0; p < positions; p++) top.push(argmax(logits, p * classes, classes));
  return top.join(",");
}

/** Index (relative to `offset`) of the largest of `length` values; the first on ties. */
export function argmax(values: Float32Array, offset: number, length: number): number {
  let best = 0;
  for (let i = 1; i < length; i++) {
    if ((values[offset + i] as number) > (values[offset + best] as number)) best = i;
  }
  return best;
}
