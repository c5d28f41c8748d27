/**
 * A JSON request body (the playground's POST /api/classify) -> the ClassifyRequest message that
 * gRPC would have decoded, so that both transports meet in the same decodeClassifyRequest and engine
 * checks. The JSON uses the proto's field names; `image.data` is base64, as in proto3's JSON mapping.
 * Only JSON types are checked here: every bound is decodeClassifyRequest's and the engine's.
 */
import { invalidArgument } from "../../engine/serverError.ts";
import type { ClassifyRequestMessage, HaltPolicyMessage, HaltSignalName } from "../ctmV1/ctmProtocol.ts";

const UINT32_MAX = 0xffff_ffff;

/** The fields of ctm.v1.ClassifyRequest and HaltPolicy a body may set (a test holds them to the proto). */
export const CLASSIFY_REQUEST_FIELDS = [
  "model",
  "version",
  "image",
  "tensor",
  "halt_policy",
  "top_k",
  "include_trace",
  "include_attention",
] as const;
export const HALT_POLICY_FIELDS = [
  "certainty_threshold",
  "target_accuracy",
  "min_ticks",
  "max_ticks",
  "patience",
  "deadline_ms",
  "target_consistency",
  "target_confidence",
  "halt_signal",
  "halt_threshold",
  "min_target_accuracy",
  "min_target_consistency",
] as const;
/** HaltSignal's values by name and by number, as proto3's JSON mapping writes an enum. */
const HALT_SIGNALS: readonly HaltSignalName[] = [
  "HALT_SIGNAL_UNSPECIFIED",
  "HALT_SIGNAL_CERTAINTY",
  "HALT_SIGNAL_HALT",
];
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function classifyRequestFromJson(body: unknown): ClassifyRequestMessage {
  const root = object(body, "the request body");
  known(root, "the request body", CLASSIFY_REQUEST_FIELDS);
  const request: ClassifyRequestMessage = {
    model: optional(root, "model", string) ?? "",
    version: optional(root, "version", uint32) ?? 0,
    top_k: optional(root, "top_k", uint32) ?? 0,
    include_trace: optional(root, "include_trace", boolean) ?? false,
    include_attention: optional(root, "include_attention", boolean) ?? false,
    halt_policy: root.halt_policy === undefined || root.halt_policy === null ? null : haltPolicy(root.halt_policy),
  };
  if (root.image !== undefined && root.tensor !== undefined)
    throw invalidArgument("input: set image or tensor, not both (they are one oneof)");
  if (root.image !== undefined) {
    const image = object(root.image, "image");
    known(image, "image", ["data"]);
    const data = optional(image, "data", string, "image.") ?? "";
    if (!BASE64.test(data)) throw invalidArgument("image.data must be base64 (standard alphabet, optional padding)");
    request.input = "image";
    request.image = { data: new Uint8Array(Buffer.from(data, "base64")) };
  } else if (root.tensor !== undefined) {
    const tensor = object(root.tensor, "tensor");
    known(tensor, "tensor", ["shape", "values"]);
    request.input = "tensor";
    request.tensor = {
      shape: optional(tensor, "shape", (v, f) => list(v, f, uint32), "tensor.") ?? [],
      values: optional(tensor, "values", (v, f) => list(v, f, number), "tensor.") ?? [],
    };
  }
  return request;
}

function haltPolicy(value: unknown): HaltPolicyMessage {
  const policy = object(value, "halt_policy");
  known(policy, "halt_policy", HALT_POLICY_FIELDS);
  const at = "halt_policy.";
  const message: HaltPolicyMessage = {
    min_ticks: optional(policy, "min_ticks", uint32, at) ?? 0,
    max_ticks: optional(policy, "max_ticks", uint32, at) ?? 0,
    patience: optional(policy, "patience", uint32, at) ?? 0,
    deadline_ms: optional(policy, "deadline_ms", uint32, at) ?? 0,
    // Plain proto3 doubles, as gRPC decodes them: absent is 0, which means not set.
    target_consistency: optional(policy, "target_consistency", number, at) ?? 0,
    target_confidence: optional(policy, "target_confidence", number, at) ?? 0,
    halt_threshold: optional(policy, "halt_threshold", number, at) ?? 0,
    min_target_accuracy: optional(policy, "min_target_accuracy", number, at) ?? 0,
    min_target_consistency: optional(policy, "min_target_consistency", number, at) ?? 0,
    halt_signal: optional(policy, "halt_signal", haltSignal, at) ?? "HALT_SIGNAL_UNSPECIFIED",
  };
  // proto3 `optional`: absent and null both mean unset, as proto-loader hands them to the decoder.
  const threshold = optional(policy, "certainty_threshold", number, at);
  const target = optional(policy, "target_accuracy", number, at);
  if (threshold !== undefined) message.certainty_threshold = threshold;
  if (target !== undefined) message.target_accuracy = target;
  return message;
}

type Field<T> = (value: unknown, field: string) => T;

function optional<T>(from: Record<string, unknown>, key: string, read: Field<T>, prefix = ""): T | undefined {
  const value = from[key];
  return value === undefined || value === null ? undefined : read(value, `${prefix}${key}`);
}

function object(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw invalidArgument(`${field} must be a JSON object, got ${describe(value)}`);
  return value as Record<string, unknown>;
}

/** An unknown key is most likely a misspelt one; ignoring it would silently run a different request. */
function known(value: Record<string, unknown>, field: string, keys: readonly string[]): void {
  const unknown = Object.keys(value).find((k) => !keys.includes(k));
  if (unknown !== undefined)
    throw invalidArgument(`${field} has unknown field ${JSON.stringify(unknown)}; known: ${keys.join(", ")}`);
}

const string: Field<string> = (value, field) => {
  if (typeof value !== "string") throw invalidArgument(`${field} must be a string, got ${describe(value)}`);
  return value;
};

const boolean: Field<boolean> = (value, field) => {
  if (typeof value !== "boolean") throw invalidArgument(`${field} must be true or false, got ${describe(value)}`);
  return value;
};

const number: Field<number> = (value, field) => {
  if (typeof value !== "number") throw invalidArgument(`${field} must be a number, got ${describe(value)}`);
  return value;
};

const uint32: Field<number> = (value, field) => {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value > UINT32_MAX)
    throw invalidArgument(`${field} must be an integer in [0, ${UINT32_MAX}], got ${describe(value)}`);
  return value;
};

const haltSignal: Field<HaltSignalName> = (value, field) => {
  const named = typeof value === "number" ? HALT_SIGNALS[value] : HALT_SIGNALS.find((name) => name === value);
  if (named === undefined)
    throw invalidArgument(
      `${field} must be one of ${HALT_SIGNALS.join(", ")} (or its number, 0 to ${HALT_SIGNALS.length - 1}), got ${describe(value)}`,
    );
  return named;
};

function list<T>(value: unknown, field: string, item: Field<T>): T[] {
  if (!Array.isArray(value)) throw invalidArgument(`${field} must be a JSON array, got ${describe(value)}`);
  return value.map((v, i) => item(v, `${field}[${i}]`));
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return "an array";
  if (value === null) return "null";
  if (typeof value === "object") return "an object";
  // JSON.parse reads a number too large for a double as Infinity, which JSON.stringify writes "null".
  if (typeof value === "number" && !Number.isFinite(value))
    return "a number too large to represent (it reads as Infinity)";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
}
