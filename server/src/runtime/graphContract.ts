/**
 * The contract between a manifest and its ONNX graphs: every tensor the manifest lists exists in the
 * graph with the same element type and shape, and the graph needs no input the manifest does not list.
 *
 * Checked by every worker on the sessions it opens (CtmBatch.open), before it reports ready: a graph
 * that was exported with other names or widths than its manifest says then fails the start (or, with
 * --on-model-error skip, marks that one model not ready) with the file and the tensor named, instead of
 * failing at the first request with an onnxruntime message about a buffer size.
 */
import type * as ort from "onnxruntime-node";
import { type Dim, type GraphSpec, type GraphTensor, MANIFEST_FILE } from "../model/manifest.ts";
import { type ModelDefinition, ModelFolderError } from "../model/modelFolder.ts";

/** A graph's inputs and outputs as onnxruntime reads them from the file. */
export interface GraphSignature {
  inputs: readonly ort.InferenceSession.ValueMetadata[];
  outputs: readonly ort.InferenceSession.ValueMetadata[];
}

/** Throws a ModelFolderError naming the graph file and every way it breaks the manifest's contract. */
export function checkGraphContract(
  model: ModelDefinition,
  sessions: { encoder: ort.InferenceSession; tick: ort.InferenceSession },
): void {
  const { encoder, tick } = model.manifest.graphs;
  for (const [path, session, spec, field] of [
    [model.encoderPath, sessions.encoder, encoder, "graphs.encoder"],
    [model.tickPath, sessions.tick, tick, "graphs.tick"],
  ] as const) {
    const problems = contractProblems({ inputs: session.inputMetadata, outputs: session.outputMetadata }, spec);
    if (problems.length > 0) {
      throw new ModelFolderError(
        `${path} does not match ${field} in ${model.dir}/${MANIFEST_FILE}: ${problems.join("; ")}`,
      );
    }
  }
}

/** Every way `graph` differs from what `spec` promises; empty when it keeps the contract. */
export function contractProblems(graph: GraphSignature, spec: GraphSpec): string[] {
  const problems: string[] = [];
  for (const [side, declared, actual] of [
    ["input", spec.inputs, graph.inputs],
    ["output", spec.outputs, graph.outputs],
  ] as const) {
    const names = actual.map((t) => t.name);
    for (const tensor of declared) {
      const found = actual.find((t) => t.name === tensor.name);
      if (!found) {
        problems.push(`the manifest lists ${side} "${tensor.name}" but the graph's ${side}s are [${names.join(", ")}]`);
      } else {
        const problem = tensorProblem(found, tensor);
        if (problem) problems.push(`${side} "${tensor.name}" ${problem}`);
      }
    }
  }
  // An input nobody feeds makes every run fail; an extra output is computed and ignored, which is harmless.
  for (const input of graph.inputs) {
    if (!spec.inputs.some((t) => t.name === input.name)) {
      problems.push(`the graph has input "${input.name}", which the manifest does not list, so nothing would feed it`);
    }
  }
  return problems;
}

function tensorProblem(actual: ort.InferenceSession.ValueMetadata, declared: GraphTensor): string | undefined {
  if (!actual.isTensor) return "is not a tensor";
  if (actual.type !== "float32") return `has element type ${actual.type} but the manifest says float32`;
  // onnxruntime reports an empty shape when the graph declares none: nothing to hold it to.
  if (actual.shape.length === 0) return undefined;
  const mismatch =
    actual.shape.length !== declared.shape.length ||
    declared.shape.some((dim, i) => !dimensionFits(actual.shape[i] as number | string, dim));
  if (!mismatch) return undefined;
  return `has shape ${formatShape(actual.shape)} but the manifest says ${formatShape(declared.shape)}`;
}

/**
 * "batch" needs a dimension the graph leaves open (a symbolic name, or -1 from some exporters); a fixed
 * size needs that size, or an open dimension, which accepts it.
 */
function dimensionFits(actual: number | string, declared: Dim): boolean {
  const open = typeof actual === "string" || actual < 0;
  return declared === "batch" ? open : open || actual === declared;
}

function formatShape(shape: ReadonlyArray<number | string>): string {
  return `[${shape.map((d) => (typeof d === "string" ? JSON.stringify(d) : String(d))).join(", ")}]`;
}
