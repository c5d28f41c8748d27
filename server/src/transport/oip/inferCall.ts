/**
 * The Open Inference Protocol's inference semantics, once for both of its transports (gRPC in
 * oip/grpcService.ts, HTTP/REST in oip/restApi.ts): a ModelInferRequest (as proto-loader decodes it,
 * or as the REST body becomes it) is checked and admitted to its model's engine, and its batch rows run
 * as engine requests, batched with everything else tick by tick.
 */
import { setMaxListeners } from "node:events";
import type { ClassifyJob, InferenceResult, ModelEngine } from "../../engine/modelEngine.ts";
import type { ModelRegistry } from "../../engine/modelRegistry.ts";
import { invalidArgument } from "../../engine/serverError.ts";
import { throwIfUndecodable } from "../grpc/requestDeserializers.ts";
import { type DecodedInfer, decodeInferRequest, decodeRows, inV2Terms } from "./inferDecoding.ts";
import { hasHaltOutput } from "./inferEncoding.ts";
import type { ModelInferRequestMessage } from "./oipProtocol.ts";

export type InferRows = ReturnType<typeof decodeRows>;

export interface AdmittedInfer {
  decoded: DecodedInfer;
  engine: ModelEngine;
  rows: InferRows;
}

/** The engine a request names, and its rows: every check that needs no compute. */
export function admitInfer(
  registry: ModelRegistry,
  request: ModelInferRequestMessage,
  maxBatch: number,
): AdmittedInfer {
  throwIfUndecodable(request, "inference.ModelInferRequest");
  const decoded = decodeInferRequest(request);
  const engine = registry.get(decoded.model, decoded.version, "model_name");
  const { manifest } = engine.definition;
  const classes = manifest.output.labels.length;
  if (decoded.classification > 0 && (manifest.output.shape.length !== 1 || decoded.classification > classes)) {
    throw invalidArgument(
      manifest.output.shape.length !== 1
        ? `outputs[].parameters.classification needs a [classes] output; model ${engine.name}'s is [${manifest.output.shape.join(", ")}]`
        : `outputs[].parameters.classification must be in [1, ${classes}] for model ${engine.name}, got ${decoded.classification}`,
    );
  }
  const named = (request.outputs ?? []).findIndex((output) => output.name === "halt");
  if (named >= 0 && !hasHaltOutput(engine)) {
    throw invalidArgument(
      `outputs[${named}].name halt: model ${engine.name} has no halting head (its manifest declares no outputs.halt), so it has no halt output`,
    );
  }
  const rows = decodeRows(request, manifest.input, engine.name, maxBatch);
  return { decoded, engine, rows };
}

/** The job of one row: the same ClassifyJob ctm.v1 builds, with every class reported. */
export function inferJob(
  engine: ModelEngine,
  decoded: DecodedInfer,
  input: InferRows[number],
  streamTicks: boolean,
): ClassifyJob {
  return {
    input,
    policy: decoded.policy,
    topK: engine.definition.manifest.output.labels.length,
    streamTicks,
    pacedByReader: streamTicks,
    // The v2 protocol has no field for it; ctm.v1's include_attention is the way to ask.
    includeAttention: false,
  };
}

/** Runs every row to its answer; the first failure aborts the rest and is thrown in v2 terms. */
export async function answerRows(
  engine: ModelEngine,
  decoded: DecodedInfer,
  rows: InferRows,
  signal: AbortSignal,
): Promise<InferenceResult[]> {
  const rowsAbort = new AbortController();
  // Each row listens to it a few times over (the engine, its input's preparation); 64 rows are not a leak.
  setMaxListeners(4 * rows.length + 8, rowsAbort.signal);
  const stop = () => rowsAbort.abort(signal.reason);
  signal.addEventListener("abort", stop, { once: true });
  try {
    return await Promise.all(
      rows.map(async (input, row) => {
        try {
          let result: InferenceResult | undefined;
          for await (const event of engine.classify(inferJob(engine, decoded, input, false), rowsAbort.signal)) {
            result = event.result ?? result;
          }
          if (!result) throw new Error("ModelInfer: a row finished without a result. This is a bug.");
          return result;
        } catch (error) {
          const refusal = inV2Terms(error, row);
          if (!rowsAbort.signal.aborted) rowsAbort.abort(refusal);
          throw refusal;
        }
      }),
    );
  } catch {
    // The first failure is the call's, not the cancellations it caused in the other rows.
    throw signal.aborted ? signal.reason : rowsAbort.signal.reason;
  } finally {
    signal.removeEventListener("abort", stop);
  }
}
