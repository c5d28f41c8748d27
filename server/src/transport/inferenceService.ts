/**
 * inference.GRPCInferenceService (the KServe v2 / Open Inference Protocol, with Triton's decoupled
 * streaming) beside ctm.v1 on the same port, and through the same path: a request is decoded into the
 * domain objects a ctm.v1 request becomes, run by the same engine (its admission, batching, halting and
 * validation), and refused through the same error policy; metrics and tokens are the server's.
 *
 * A batch of N rows is N engine requests, batched with everything else tick by tick; the first row to
 * fail fails the call and cancels the others. ModelStreamInfer answers each request with one response
 * per tick, the last one flagged triton_final_response; a request that fails is one response with
 * error_message, and the stream goes on.
 *
 * A stream is bounded like everything else: each request counts against --max-inflight-bytes until it
 * is answered, at most --max-batch of its requests run at once, and while that many run, or while its
 * client takes no answers, the stream reads no more (HTTP/2 flow control then holds the client back).
 * A client that takes nothing for --stream-write-idle-ms loses the whole call, not one request.
 */
import { setMaxListeners } from "node:events";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import type * as grpc from "@grpc/grpc-js";
import { status as grpcStatus } from "@grpc/grpc-js";
import type { InferenceResult, ModelEngine, TickReport } from "../engine/modelEngine.ts";
import type { ModelRegistry } from "../engine/modelRegistry.ts";
import { invalidArgument } from "../engine/serverError.ts";
import type { Logger } from "../logger.ts";
import type { ServerMetrics } from "../metrics.ts";
import { abortSignalOf, drained } from "./callLifetime.ts";
import { type CallStatus, toStatus } from "./errorPolicy.ts";
import { type DecodedInfer, decodeInferRequest, decodeRows, inV2Terms, MAX_ID_CHARS } from "./inferenceDecoding.ts";
import {
  answerView,
  encodeInferResponse,
  encodeModelConfig,
  encodeModelMetadata,
  hasHaltOutput,
  type RowView,
} from "./inferenceEncoding.ts";
import type {
  ModelInferRequestMessage,
  ModelInferResponseMessage,
  ModelStreamInferResponseMessage,
} from "./inferenceProtocol.ts";
import { releaseMessage } from "./inflightBytes.ts";
import { modelHealthService } from "./modelHealth.ts";
import { throwIfUndecodable } from "./requestDecoding.ts";
import { recordRequest } from "./requestMetrics.ts";
import type { ServingHealth } from "./servingHealth.ts";

export interface InferenceServiceOptions {
  /** The most rows one request may carry: the server's --max-batch. */
  maxBatch: number;
  /** How long a stream may wait for its reader before it is ended: the server's --stream-write-idle-ms. */
  streamWriteIdleMs: number;
  /** ServerMetadata's name and version; default: package.json's. */
  server?: { name: string; version: string };
}

const PACKAGE = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
  name: string;
  version: string;
};

/** What ServerMetadata lists: Triton's names for the extensions this server implements. */
const EXTENSIONS = ["classification", "model_configuration"];

interface ModelRef {
  name?: string;
  version?: string;
}

export function createInferenceService(
  registry: ModelRegistry,
  health: ServingHealth,
  metrics: ServerMetrics,
  log: Logger,
  options: InferenceServiceOptions,
): grpc.UntypedServiceImplementation {
  const record = (model: string, method: string, code: grpcStatus, started: number) =>
    recordRequest(registry, metrics, model, method, code, started);

  /** The engine a request names, and its rows; every check that needs no compute. */
  function admit(request: ModelInferRequestMessage): { decoded: DecodedInfer; engine: ModelEngine; rows: RowsOf } {
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
    const rows = decodeRows(request, manifest.input, engine.name, options.maxBatch);
    return { decoded, engine, rows };
  }

  /** The job of one row: the same ClassifyJob ctm.v1 builds, with every class reported. */
  function jobOf(engine: ModelEngine, decoded: DecodedInfer, input: RowsOf[number], streamTicks: boolean) {
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
  async function answerRows(
    engine: ModelEngine,
    decoded: DecodedInfer,
    rows: RowsOf,
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
            for await (const event of engine.classify(jobOf(engine, decoded, input, false), rowsAbort.signal)) {
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

  function modelOrFailure(ref: ModelRef): ModelEngine {
    if (ref.version && !/^[1-9][0-9]{0,8}$/.test(ref.version)) {
      throw invalidArgument(
        `version must be empty (the loaded version) or a positive integer, got ${JSON.stringify(ref.version)}`,
      );
    }
    return registry.get(ref.name ?? "", Number(ref.version || 0), "name");
  }

  /** A unary description call: its answer, or its refusal through the error policy. */
  function describe<T>(
    method: string,
    call: grpc.ServerUnaryCall<ModelRef, T>,
    callback: grpc.sendUnaryData<T>,
    answer: (engine: ModelEngine) => T,
  ) {
    const started = performance.now();
    const model = call.request.name ?? "";
    try {
      callback(null, answer(modelOrFailure(call.request)));
      record(model, method, grpcStatus.OK, started);
    } catch (error) {
      const status = toStatus(error, log, { method, model });
      callback(status);
      record(model, method, status.code, started);
    }
  }

  return {
    ServerLive(_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<{ live: boolean }>) {
      // Whoever gets an answer reached a live server: it answers from the moment it binds to the end.
      callback(null, { live: true });
    },

    ServerReady(_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<{ ready: boolean }>) {
      callback(null, { ready: health.statusOf("") === "SERVING" });
    },

    ModelReady(call: grpc.ServerUnaryCall<ModelRef, unknown>, callback: grpc.sendUnaryData<{ ready: boolean }>) {
      const { name = "", version = "" } = call.request;
      const serving = name !== "" && health.statusOf(modelHealthService(name)) === "SERVING";
      // A version that is not the loaded one is not ready, as an unknown model is not.
      const loaded = registry.all().find((engine) => engine.name === name)?.definition.manifest.version;
      callback(null, { ready: serving && (version === "" || version === String(loaded)) });
    },

    ServerMetadata(
      _call: grpc.ServerUnaryCall<unknown, unknown>,
      callback: grpc.sendUnaryData<{ name: string; version: string; extensions: string[] }>,
    ) {
      const { name, version } = options.server ?? PACKAGE;
      callback(null, { name, version, extensions: EXTENSIONS });
    },

    ModelMetadata(call: grpc.ServerUnaryCall<ModelRef, unknown>, callback: grpc.sendUnaryData<unknown>) {
      describe("ModelMetadata", call, callback, encodeModelMetadata);
    },

    ModelConfig(call: grpc.ServerUnaryCall<ModelRef, unknown>, callback: grpc.sendUnaryData<unknown>) {
      describe("ModelConfig", call, callback, (engine) => ({ config: encodeModelConfig(engine, options.maxBatch) }));
    },

    async ModelInfer(
      call: grpc.ServerUnaryCall<ModelInferRequestMessage, ModelInferResponseMessage>,
      callback: grpc.sendUnaryData<ModelInferResponseMessage>,
    ) {
      const started = performance.now();
      const { signal, throwIfGone, dispose } = abortSignalOf(call);
      let model = call.request.model_name ?? "";
      try {
        const { decoded, engine, rows } = admit(call.request);
        model = engine.name;
        const results = await answerRows(engine, decoded, rows, signal);
        throwIfGone();
        callback(null, encodeInferResponse(engine, results.map(answerView), decoded));
        record(model, "ModelInfer", grpcStatus.OK, started);
      } catch (error) {
        const status = toStatus(error, log, { method: "ModelInfer", model });
        callback(status);
        record(model, "ModelInfer", status.code, started);
      } finally {
        dispose();
      }
    },

    ModelStreamInfer(call: grpc.ServerDuplexStream<ModelInferRequestMessage, ModelStreamInferResponseMessage>) {
      const { signal, throwIfGone, dispose } = abortSignalOf(call);
      const running = new Set<Promise<void>>();
      /** Set while the client's window is full: every answer waits for the same 'drain' (one timer, one log line). */
      let backedUp: Promise<void> | undefined;
      let reading = true;
      // Read on only while the stream has room and its client takes its answers.
      const pace = () => {
        const hold = running.size >= options.maxBatch || backedUp !== undefined;
        if (hold === !reading) return;
        reading = !hold;
        if (hold) call.pause();
        else call.resume();
      };
      const write = async (message: ModelStreamInferResponseMessage) => {
        while (backedUp) await backedUp;
        throwIfGone();
        if (call.write(message)) return;
        backedUp = drained(call, options.streamWriteIdleMs, (details) =>
          log.warn(
            { method: "ModelStreamInfer", requests: running.size },
            `${details}; its ${running.size} request(s) are cancelled`,
          ),
        ).finally(() => {
          backedUp = undefined;
          pace();
        });
        pace();
        await backedUp;
      };

      async function streamOne(request: ModelInferRequestMessage): Promise<void> {
        const started = performance.now();
        let model = request.model_name ?? "";
        let failure: CallStatus | undefined;
        try {
          const { decoded, engine, rows } = admit(request);
          model = engine.name;
          if (rows.length !== 1) {
            throw invalidArgument(
              `inputs[0].shape[0] (the batch) must be 1 for ModelStreamInfer, which answers with one response per tick; got ${rows.length} (send a batch to ModelInfer, or one request per row)`,
            );
          }
          const job = jobOf(engine, decoded, rows[0] as RowsOf[number], true);
          for await (const event of engine.classify(job, signal)) {
            const view = streamView(event.tick, event.result);
            if (!view) continue;
            const response = encodeInferResponse(engine, [view], { ...decoded, final: !!event.result });
            await write({ error_message: "", infer_response: response });
          }
          record(model, "ModelStreamInfer", grpcStatus.OK, started);
        } catch (error) {
          failure = toStatus(inV2Terms(error, 0), log, { method: "ModelStreamInfer", model });
          record(model, "ModelStreamInfer", failure.code, started);
        } finally {
          // Its bytes go back before its refusal waits to be written: a refused request holds nothing.
          releaseMessage(request);
        }
        if (failure && !signal.aborted) await write(errorResponse(request, failure)).catch(() => undefined);
      }

      call.on("data", (request: ModelInferRequestMessage) => {
        const done = streamOne(request).finally(() => {
          running.delete(done);
          pace();
        });
        running.add(done);
        pace();
      });
      call.on("end", async () => {
        await Promise.all(running);
        dispose();
        if (!signal.aborted) call.end();
      });
      call.on("error", () => dispose());
    },
  };
}

type RowsOf = ReturnType<typeof decodeRows>;

/** A stream's response row: the tick it reports, or, should the answer come alone, the answer. */
function streamView(tick: TickReport | undefined, result: InferenceResult | undefined): RowView | undefined {
  if (tick) return { ...tick, result };
  return result ? { ...answerView(result), tick: result.ticksUsed } : undefined;
}

/**
 * A failed stream request: Triton's error_message, plus the request's id and the status name as the
 * parameter error_code, so that a client can tell a request to retry (RESOURCE_EXHAUSTED, UNAVAILABLE)
 * from one to fix.
 */
function errorResponse(request: ModelInferRequestMessage, status: CallStatus): ModelStreamInferResponseMessage {
  return {
    error_message: status.details,
    infer_response: {
      // Echoed only where they could be valid: a refused 1 MB name is not sent back on every refusal.
      model_name: echoable(request.model_name),
      model_version: echoable(request.model_version),
      id: echoable(request.id),
      parameters: {
        triton_final_response: { bool_param: true },
        error_code: { string_param: grpcStatus[status.code] ?? String(status.code) },
      },
      outputs: [],
      raw_output_contents: [],
    },
  };
}

function echoable(value: string | undefined): string {
  return value !== undefined && value.length <= MAX_ID_CHARS ? value : "";
}
