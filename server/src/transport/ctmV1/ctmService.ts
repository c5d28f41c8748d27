/**
 * ctm.v1.CtmService handlers: decode the request into a domain job, run it, encode what comes back,
 * and map every error through the one error policy. A call that is cancelled or runs past its
 * deadline aborts its job, so the engine drops it at the next tick boundary.
 */
import { performance } from "node:perf_hooks";
import type * as grpc from "@grpc/grpc-js";
import { status as grpcStatus } from "@grpc/grpc-js";
import type { ModelEngine } from "../../engine/modelEngine.ts";
import type { ModelRegistry } from "../../engine/modelRegistry.ts";
import type { Logger } from "../../logger.ts";
import type { ServerMetrics } from "../../metrics.ts";
import { abortSignalOf, drained } from "../grpc/callLifetime.ts";
import { toStatus } from "../grpc/errorPolicy.ts";
import { recordRequest } from "../grpc/requestMetrics.ts";
import { decodeClassifyRequest } from "./classifyDecoding.ts";
import type {
  ClassifyRequestMessage,
  ClassifyResponseMessage,
  ListModelsResponseMessage,
  ModelInfoMessage,
  TickUpdateMessage,
} from "./ctmProtocol.ts";
import { encodeModelInfo, encodeResult, encodeTick } from "./responseEncoding.ts";

type Call = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;

export interface CtmServiceOptions {
  /** How long a stream may wait for its client to take a message before it ends (--stream-write-idle-ms). */
  streamWriteIdleMs: number;
}

export function createCtmService(
  registry: ModelRegistry,
  metrics: ServerMetrics,
  log: Logger,
  options: CtmServiceOptions,
): grpc.UntypedServiceImplementation {
  const record = (model: string, method: string, code: grpcStatus, started: number) =>
    recordRequest(registry, metrics, model, method, code, started);

  async function runClassify(
    call: Call,
    method: string,
    onEvent: (engine: ModelEngine, tick?: TickUpdateMessage, result?: ClassifyResponseMessage) => Promise<void>,
    streamTicks: boolean,
  ) {
    const started = performance.now();
    const request = call.request as ClassifyRequestMessage;
    const { signal, throwIfGone, dispose } = abortSignalOf(call);
    let model = request.model ?? "";
    try {
      const decoded = decodeClassifyRequest(request);
      const engine = registry.get(decoded.model, decoded.version);
      model = engine.name;
      // A stream's ticks are computed as fast as its client takes them; a trace is just collected.
      const job = { ...decoded.job, streamTicks: streamTicks || decoded.includeTrace, pacedByReader: streamTicks };
      for await (const event of engine.classify(job, signal)) {
        throwIfGone();
        const result = event.result ? encodeResult(engine, event.result, []) : undefined;
        await onEvent(
          engine,
          event.tick ? encodeTick(event.tick, streamTicks ? result : undefined) : undefined,
          result,
        );
      }
      throwIfGone();
      record(model, method, grpcStatus.OK, started);
      return undefined;
    } catch (error) {
      const status = toStatus(error, log, { method, model });
      record(model, method, status.code, started);
      return status;
    } finally {
      dispose();
    }
  }

  return {
    async Classify(
      call: grpc.ServerUnaryCall<ClassifyRequestMessage, ClassifyResponseMessage>,
      callback: grpc.sendUnaryData<ClassifyResponseMessage>,
    ) {
      const trace: TickUpdateMessage[] = [];
      let response: ClassifyResponseMessage | undefined;
      const failure = await runClassify(
        call,
        "Classify",
        async (_engine, tick, result) => {
          if (tick) trace.push(tick);
          if (result) response = { ...result, trace };
        },
        false,
      );
      if (failure) callback(failure);
      else if (response) callback(null, response);
      else callback(toStatus(new Error("Classify finished without a result. This is a bug."), log));
    },

    async ClassifyStream(call: grpc.ServerWritableStream<ClassifyRequestMessage, TickUpdateMessage>) {
      const failure = await runClassify(
        call,
        "ClassifyStream",
        async (engine, tick) => {
          if (!tick) throw new Error("a streamed request produced an event without a tick. This is a bug.");
          // Respect backpressure: a slow reader pauses this handler, not the whole server (its request
          // is parked meanwhile and holds no batch slot); one that takes nothing for too long is ended.
          if (!call.write(tick))
            await drained(call, options.streamWriteIdleMs, (details) =>
              log.warn({ method: "ClassifyStream", model: engine.name }, details),
            );
        },
        true,
      );
      if (failure) call.emit("error", failure);
      else call.end();
    },

    ListModels(
      _call: grpc.ServerUnaryCall<unknown, ListModelsResponseMessage>,
      callback: grpc.sendUnaryData<ListModelsResponseMessage>,
    ) {
      const started = performance.now();
      callback(null, { models: registry.listed().map(encodeModelInfo) });
      record("", "ListModels", grpcStatus.OK, started);
    },

    GetModel(
      call: grpc.ServerUnaryCall<{ name?: string; version?: number }, ModelInfoMessage>,
      callback: grpc.sendUnaryData<ModelInfoMessage>,
    ) {
      const started = performance.now();
      const { name = "", version = 0 } = call.request;
      try {
        callback(null, encodeModelInfo(registry.find(name, version, "name")));
        record(name, "GetModel", grpcStatus.OK, started);
      } catch (error) {
        const status = toStatus(error, log, { method: "GetModel", model: name });
        callback(status);
        record(name, "GetModel", status.code, started);
      }
    },
  };
}
