/**
 * What a soak run sends: mostly good requests (real sample images, unary and streaming), some that the
 * client cancels on purpose, and some that are wrong in a known way. Each kind says which statuses it
 * may end with, so that one outcome anywhere outside them fails the run.
 */
import * as grpc from "@grpc/grpc-js";
import type { ClassifyRequestMessage } from "../../server/src/transport/ctmV1/ctmProtocol.ts";
import type { CtmConnection, Sample } from "../../tools/harness/index.ts";

export const KINDS = [
  "good-unary",
  "good-stream",
  "cancel-stream",
  "cancel-unary",
  "bad-image",
  "bad-shape",
  "bad-model",
  "bad-policy",
] as const;
export type Kind = (typeof KINDS)[number];

/**
 * The statuses each kind may end with. A cancelled call may still finish first (the model halted
 * before the client cancelled), so OK is allowed there too.
 */
export const EXPECTED: Record<Kind, readonly string[]> = {
  "good-unary": ["OK"],
  "good-stream": ["OK"],
  "cancel-stream": ["CANCELLED", "OK"],
  "cancel-unary": ["CANCELLED", "OK"],
  "bad-image": ["INVALID_ARGUMENT"],
  "bad-shape": ["INVALID_ARGUMENT"],
  "bad-model": ["NOT_FOUND"],
  "bad-policy": ["INVALID_ARGUMENT"],
};

export interface MixFractions {
  /** Share of requests the client cancels mid-call. */
  cancel: number;
  /** Share of requests that are bad in one of four ways. */
  bad: number;
}

export interface Outcome {
  kind: Kind;
  /** A gRPC status name, e.g. "OK", "CANCELLED". */
  code: string;
  details: string;
  latencyMs: number;
  /** Good requests that answered: whether the top class was the sample's label. */
  correct: boolean | null;
}

/** Picks a kind for a uniform random number in [0, 1). */
export function pickKind(r: number, fractions: MixFractions): Kind {
  if (r < fractions.bad) {
    const bad = ["bad-image", "bad-shape", "bad-model", "bad-policy"] as const;
    return bad[Math.min(bad.length - 1, Math.floor((r / fractions.bad) * bad.length))] as Kind;
  }
  if (r < fractions.bad + fractions.cancel) {
    return (r - fractions.bad) / fractions.cancel < 0.5 ? "cancel-stream" : "cancel-unary";
  }
  const good = (r - fractions.bad - fractions.cancel) / (1 - fractions.bad - fractions.cancel);
  return good < 0.5 ? "good-unary" : "good-stream";
}

const statusName = (code: number) => grpc.status[code] ?? String(code);

/** A PNG signature and the start of a real header, then bytes no decoder accepts. */
function corruptImage(sample: Buffer): Buffer {
  const garbage = Buffer.alloc(256, 0x5a);
  return Buffer.concat([sample.subarray(0, 24), garbage]);
}

export interface MixContext {
  connection: CtmConnection;
  model: string;
  /** The model's input shape, to send a wrong one. */
  inputShape: number[];
  timeoutMs: number;
}

/**
 * Sends one request of `kind` and resolves with how it ended; never rejects for a gRPC status.
 * `random` decides when a cancelling client cancels; latency counts from `started` (when it was due).
 */
export async function send(
  context: MixContext,
  kind: Kind,
  sample: Sample,
  random: () => number,
  started = performance.now(),
): Promise<Outcome> {
  const { connection, model, timeoutMs } = context;
  const base: ClassifyRequestMessage = { model, ...sample.input, top_k: 1 };
  let request = base;
  if (kind === "bad-image") {
    const data = "image" in sample.input ? sample.input.image.data : Buffer.alloc(8);
    request = { model, image: { data: corruptImage(data) } };
  } else if (kind === "bad-shape") {
    const wrong = context.inputShape.slice(1);
    request = { model, tensor: { shape: wrong, values: new Array(wrong.reduce((a, b) => a * b, 1)).fill(0) } };
  } else if (kind === "bad-model") {
    request = { ...base, model: "no-such-model" };
  } else if (kind === "bad-policy") {
    request = { ...base, halt_policy: { certainty_threshold: 1.5 } };
  }
  const options = { deadline: Date.now() + timeoutMs };
  const label = sample.label?.[0];
  const finish = (code: string, details: string, predicted?: number): Outcome => ({
    kind,
    code,
    details,
    latencyMs: performance.now() - started,
    correct: predicted === undefined || label === undefined ? null : predicted === label,
  });
  const failed = (error: unknown, predicted?: number): Outcome => {
    const { code, details } = error as grpc.ServiceError;
    if (typeof code !== "number") throw error;
    return finish(statusName(code), details, predicted);
  };

  if (kind === "good-stream" || kind === "cancel-stream") {
    // Cancel after one to three ticks have arrived: mid-stream, while the server is still thinking.
    const cancelAfter = kind === "cancel-stream" ? 1 + Math.floor(random() * 3) : Number.POSITIVE_INFINITY;
    const cancel = new AbortController();
    let ticks = 0;
    let predicted: number | undefined;
    try {
      for await (const update of connection.classifyStream(request, { ...options, signal: cancel.signal })) {
        ticks++;
        if (update.final) predicted = update.result?.top_k[0]?.index;
        if (ticks === cancelAfter) cancel.abort();
      }
    } catch (error) {
      return failed(error, predicted);
    }
    if (predicted === undefined && kind === "good-stream") {
      return finish("CLIENT_NO_FINAL_MESSAGE", "the stream ended OK without a final message");
    }
    return finish("OK", "", predicted);
  }

  // A unary call the client gives up on after 0-20 ms: while it is queued, encoding or ticking.
  const cancel = new AbortController();
  const timer = kind === "cancel-unary" ? setTimeout(() => cancel.abort(), random() * 20) : undefined;
  try {
    const response = await connection.classify(request, { ...options, signal: cancel.signal });
    return finish("OK", "", response.top_k[0]?.index);
  } catch (error) {
    return failed(error);
  } finally {
    clearTimeout(timer);
  }
}
