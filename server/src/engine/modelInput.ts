/**
 * What a request brings to a model: an encoded image, or a raw tensor that must match the manifest's
 * input spec exactly. Checking a tensor here gives the client a message naming the offending index;
 * letting a NaN through would poison the batch's shared graph run for nobody's benefit.
 */
import type { ImageInput, InputSpec } from "../model/manifest.ts";
import { BlankImageError } from "../runtime/blankImage.ts";
import { ImageDecodeError, type ImageLimits, preprocessImage } from "../runtime/imagePreprocess.ts";
import { echo, invalidArgument } from "./serverError.ts";

export type ModelInput =
  | { kind: "image"; data: Uint8Array }
  | { kind: "tensor"; shape: readonly number[]; values: ArrayLike<number> };

/**
 * Any input as the graph's float32 row (images preprocessed as the spec says), or INVALID_ARGUMENT.
 * When `signal` aborts first it rejects with the signal's reason at once: an image still decoding
 * finishes on its own, but its request no longer waits for it (nor holds its place in the queue).
 */
export async function prepareInput(
  input: ModelInput,
  spec: InputSpec,
  model: string,
  limits: ImageLimits,
  signal?: AbortSignal,
): Promise<Float32Array> {
  if (input.kind === "tensor") return checkTensorInput(input, spec, model);
  if (!spec.image) {
    throw invalidArgument(
      `input.image is not accepted by model ${model}, whose input kind is "${spec.kind}"; send input.tensor with shape [${spec.shape.join(", ")}]`,
    );
  }
  if (input.data.length === 0) throw invalidArgument("input.image.data is empty");
  try {
    return await untilAborted(preprocessImage(input.data, spec.image, limits, signal), signal);
  } catch (error) {
    if (error instanceof ImageDecodeError) throw invalidArgument(`input.image.data ${error.message}`);
    if (error instanceof BlankImageError) throw invalidArgument(`input.image.data has no ink: ${error.message}`);
    throw error;
  }
}

/** A raw tensor input as the graph's float32 row, or an INVALID_ARGUMENT naming the problem. */
export function checkTensorInput(
  input: { shape: readonly number[]; values: ArrayLike<number> },
  spec: InputSpec,
  model: string,
): Float32Array {
  const expected = spec.shape;
  if (input.shape.length !== expected.length || input.shape.some((d, i) => d !== expected[i])) {
    throw invalidArgument(
      `input.tensor.shape must be [${expected.join(", ")}] for model ${model}, got ${echo(input.shape)}`,
    );
  }
  const size = expected.reduce((a, b) => a * b, 1);
  if (input.values.length !== size) {
    throw invalidArgument(
      `input.tensor.values must have ${size} values for shape [${expected.join(", ")}], got ${input.values.length}`,
    );
  }
  const allowed = spec.allowedValues ? new Set(spec.allowedValues.map(Math.fround)) : undefined;
  const ranges = spec.image ? pixelRanges(spec.image) : undefined;
  const plane = spec.image ? spec.image.width * spec.image.height : 1;
  const row = Float32Array.from(input.values);
  for (let i = 0; i < row.length; i++) {
    const v = row[i] as number;
    if (!Number.isFinite(v)) throw invalidArgument(`input.tensor.values[${i}] is ${v}; every value must be finite`);
    if (allowed && !allowed.has(v)) {
      throw invalidArgument(
        `input.tensor.values[${i}] is ${v}; model ${model} accepts only ${[...(spec.allowedValues ?? [])].join(", ")}`,
      );
    }
    const range = ranges?.[Math.floor(i / plane)];
    if (range && !(v >= range.low - range.slack && v <= range.high + range.slack)) {
      throw invalidArgument(
        `input.tensor.values[${i}] is ${v}; model ${model} takes normalised pixels, (pixel / 255 - mean) / std, in [${range.low.toFixed(4)}, ${range.high.toFixed(4)}] for channel ${Math.floor(i / plane)}`,
      );
    }
  }
  return row;
}

/**
 * What the manifest's normalisation can produce from pixels in [0, 255], per channel, widened by a
 * hair for float32 rounding. An image model has only ever seen values in this range; far outside it
 * (1e30, say) its graph overflows and answers NaN certainty to a request that looked valid.
 */
function pixelRanges(image: ImageInput): { low: number; high: number; slack: number }[] {
  return Array.from({ length: image.channels }, (_, c) => {
    const mean = image.normalize.mean[c] as number;
    const std = image.normalize.std[c] as number;
    const [a, b] = [(0 - mean) / std, (1 - mean) / std];
    return { low: Math.min(a, b), high: Math.max(a, b), slack: 1e-4 * Math.abs(b - a) };
  });
}

/** `work`, or the signal's reason as soon as it aborts (`work` goes on, unobserved). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(signal.reason);
    signal.addEventListener("abort", abort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}
