/**
 * The baseline for benchmark 1: one input through the encoder and every tick, in-process, with the
 * same ONNX graphs and the same session options the server uses, and nothing else - no gRPC, no
 * worker thread, no batching.
 */
import { performance } from "node:perf_hooks";
import * as ort from "onnxruntime-node";
import type { ModelDefinition } from "../../src/model/modelFolder.ts";
import { openSessions } from "../../src/runtime/executionProvider.ts";

export interface BareLoop {
  /** Milliseconds for one input, encoder plus `ticks` ticks. */
  run(input: Float32Array, ticks: number): Promise<number>;
  /** The same loop, returning the last tick's class probabilities. */
  probabilities(input: Float32Array, ticks: number): Promise<Float32Array>;
  close(): Promise<void>;
}

export async function openBareLoop(model: ModelDefinition, threads: number): Promise<BareLoop> {
  const { encoder, tick } = await openSessions(model.encoderPath, model.tickPath, { provider: "cpu", threads });
  const { manifest } = model;
  const inputName = manifest.graphs.encoder.inputs[0]?.name as string;
  const probabilities = async (input: Float32Array, ticks: number) => {
    const encoded = await encoder.run({
      [inputName]: new ort.Tensor("float32", input, [1, ...manifest.input.shape]),
    });
    const feeds: Record<string, ort.Tensor> = {};
    for (const c of manifest.context) feeds[c.name] = encoded[c.name] as ort.Tensor;
    for (const s of manifest.state) feeds[s.input] = encoded[s.init] as ort.Tensor;
    let out: ort.InferenceSession.OnnxValueMapType = {};
    for (let t = 0; t < ticks; t++) {
      out = await tick.run(feeds);
      for (const s of manifest.state) feeds[s.input] = out[s.output] as ort.Tensor;
    }
    return (out[manifest.outputs.probabilities] as ort.Tensor).data as Float32Array;
  };
  return {
    async run(input, ticks) {
      const started = performance.now();
      await probabilities(input, ticks);
      return performance.now() - started;
    },
    probabilities,
    close: async () => {
      await Promise.all([encoder.release(), tick.release()]);
    },
  };
}
