/**
 * One request as the load generator sees it: send a sample with a threshold, time it, and reduce the
 * answer to what a point records. Latency counts from `intendedAt`, the moment the request was meant
 * to start, which the open loop sets to its schedule so that a late send is charged, not hidden.
 */
import * as grpc from "@grpc/grpc-js";
import type {
  ClassifyRequestMessage,
  ClassifyResponseMessage,
  HaltPolicyMessage,
} from "../../server/src/transport/ctmV1/ctmProtocol.ts";
import type { CtmConnection } from "./ctmConnection.ts";
import type { Sample } from "./samples.ts";

/** Classify (one response) or ClassifyStream (one message per tick). */
export type CallKind = "unary" | "stream";

export type CallOutcome =
  | {
      ok: true;
      latencyMs: number;
      /** Streaming only: until the first tick arrived. */
      firstTickMs: number | null;
      ticksUsed: number;
      /** HaltReason without the HALT_REASON_ prefix, e.g. "THRESHOLD". */
      haltReason: string;
      /** The answer's class, one per position for multi-position outputs. */
      prediction: number[];
      /** What the answer says it was served at, when the request set a target. */
      guarantee?: StatedGuarantee;
    }
  | {
      ok: false;
      latencyMs: number;
      /** A gRPC status name such as "RESOURCE_EXHAUSTED", or a CLIENT_* name for a broken answer. */
      code: string;
    };

/** The guarantee an answer states: the target it was served at, and whether load lowered it. */
export interface StatedGuarantee {
  target: number;
  threshold: number;
  met: boolean;
  lowered: boolean;
}

/** `intendedAt` is a performance.now() time; `signal` cancels the call. */
export type Caller = (sample: Sample, intendedAt: number, signal?: AbortSignal) => Promise<CallOutcome>;

/** Status names that are not gRPC codes: answers the client could not use. */
export const CLIENT_NO_RESULT = "CLIENT_NO_RESULT";

function predictionOf(result: ClassifyResponseMessage): number[] {
  const [top] = result.top_k;
  return top ? [top.index] : result.positions.map((p) => p.index);
}

const reasonName = (reason: string) => reason.replace(/^HALT_REASON_/, "");

/** What a point records of an answer: its prediction, ticks and halting, and the guarantee it states. */
export function answerOutcome(
  result: ClassifyResponseMessage,
  latencyMs: number,
  firstTickMs: number | null,
): CallOutcome {
  const prediction = predictionOf(result);
  if (prediction.length === 0 || result.ticks_used < 1) return { ok: false, latencyMs, code: CLIENT_NO_RESULT };
  const { guarantee } = result;
  return {
    ok: true,
    latencyMs,
    firstTickMs,
    ticksUsed: result.ticks_used,
    haltReason: reasonName(result.halt_reason),
    prediction,
    ...(guarantee && {
      guarantee: {
        target: guarantee.target,
        threshold: guarantee.threshold,
        met: guarantee.met,
        // A server from before floors says nothing: it never lowers.
        lowered: guarantee.lowered_by_load ?? false,
      },
    }),
  };
}

function failure(error: unknown, latencyMs: number): CallOutcome {
  const code = (error as Partial<grpc.ServiceError>).code;
  if (typeof code !== "number") throw error;
  return { ok: false, latencyMs, code: grpc.status[code] ?? String(code) };
}

export interface CallerOptions {
  model: string;
  version: number;
  call: CallKind;
  threshold: number;
  /** Sent instead of the threshold when set (a target_accuracy or target_consistency request). */
  policy?: HaltPolicyMessage;
  timeoutMs: number;
}

export function makeCaller(connection: CtmConnection, options: CallerOptions): Caller {
  const request = (sample: Sample): ClassifyRequestMessage => ({
    model: options.model,
    version: options.version,
    ...sample.input,
    halt_policy: options.policy ?? { certainty_threshold: options.threshold },
    // The top class is all a load test reads; more would only grow every message.
    top_k: 1,
    include_trace: false,
  });

  if (options.call === "unary") {
    return async (sample, intendedAt, signal) => {
      try {
        const result = await connection.classify(request(sample), {
          deadline: Date.now() + options.timeoutMs,
          signal,
        });
        return answerOutcome(result, performance.now() - intendedAt, null);
      } catch (error) {
        return failure(error, performance.now() - intendedAt);
      }
    };
  }

  return async (sample, intendedAt, signal) => {
    const stream = connection.classifyStream(request(sample), { deadline: Date.now() + options.timeoutMs, signal });
    let firstTickMs: number | null = null;
    let result: ClassifyResponseMessage | null = null;
    try {
      for await (const update of stream) {
        firstTickMs ??= performance.now() - intendedAt;
        if (update.final) result = update.result;
      }
      const latencyMs = performance.now() - intendedAt;
      return result ? answerOutcome(result, latencyMs, firstTickMs) : { ok: false, latencyMs, code: CLIENT_NO_RESULT };
    } catch (error) {
      return failure(error, performance.now() - intendedAt);
    }
  };
}
