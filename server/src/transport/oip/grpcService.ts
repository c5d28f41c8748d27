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
import { performance } from "node:perf_hooks";
import type * as grpc from "@grpc/grpc-js";
import { status as grpcStatus } from "@grpc/grpc-js";
import type { InferenceResult, ModelEngine, TickReport } from "../../engine/modelEngine.ts";
import type { ModelRegistry } from "../../engine/modelRegistry.ts";
import { invalidArgument } from "../../engine/serverError.ts";
import type { Logger } from "../../logger.ts";
import type { ServerMetrics } from "../../metrics.ts";
import { abortSignalOf, drained } from "../grpc/callLifetime.ts";
import { type CallStatus, toStatus } from "../grpc/errorPolicy.ts";
import { releaseMessage } from "../grpc/inflightBytes.ts";
import { recordRequest } from "../grpc/requestMetrics.ts";
import { admitInfer, answerRows, type InferRows, inferJob } from "./inferCall.ts";
import { inV2Terms, MAX_ID_CHARS } from "./inferDecoding.ts";
import { answerView, encodeInferResponse, encodeModelConfig, type RowView } from "./inferEncoding.ts";
import {
  describedModel,
  modelMetadata,
  modelReady,
  type Readiness,
  type ServerMetadata,
  serverMetadata,
  serverReady,
} from "./modelDescription.ts";
import type {
  ModelInferRequestMessage,
  ModelInferResponseMessage,
  ModelStreamInferResponseMessage,
} from "./oipProtocol.ts";

export interface InferenceServiceOptions {
  /** The most rows one request may carry: the server's --max-batch. */
  maxBatch: number;
  /** How long a stream may wait for its reader before it is ended: the server's --stream-write-idle-ms. */
  streamWriteIdleMs: number;
  /** ServerMetadata's name and version; default: package.json's. */
  server?: { name: string; version: string };
}

interface ModelRef {
  name?: string;
  version?: string;
}

export function createInferenceService(
  registry: ModelRegistry,
  health: Readiness,
  metrics: ServerMetrics,
  log: Logger,
  options: InferenceServiceOptions,
): grpc.UntypedServiceImplementation {
  const record = (model: string, method: string, code: grpcStatus, started: number) =>
    recordRequest(registry, metrics, model, method, code, started);

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
      callback(null, answer(describedModel(registry, call.request.name, call.request.version)));
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
      callback(null, { ready: serverReady(health) });
    },

    ModelReady(call: grpc.ServerUnaryCall<ModelRef, unknown>, callback: grpc.sendUnaryData<{ ready: boolean }>) {
      const { name = "", version = "" } = call.request;
      callback(null, { ready: modelReady(registry, health, name, version) });
    },

    ServerMetadata(_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<ServerMetadata>) {
      callback(null, serverMetadata(options.server));
    },

    ModelMetadata(call: grpc.ServerUnaryCall<ModelRef, unknown>, callback: grpc.sendUnaryData<unknown>) {
      describe("ModelMetadata", call, callback, (engine) => modelMetadata(registry, engine));
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
        const { decoded, engine, rows } = admitInfer(registry, call.request, options.maxBatch);
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
      // Every request of the stream listens to the call's signal (up to --max-batch at once).
      setMaxListeners(4 * options.maxBatch + 8, signal);
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
          const { decoded, engine, rows } = admitInfer(registry, request, options.maxBatch);
          model = engine.name;
          if (rows.length !== 1) {
            throw invalidArgument(
              `inputs[0].shape[0] (the batch) must be 1 for ModelStreamInfer, which answers with one response per tick; got ${rows.length} (send a batch to ModelInfer, or one request per row)`,
            );
          }
          const job = inferJob(engine, decoded, rows[0] as InferRows[number], true);
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
