/**
 * The whole error policy, in one function (as nice-grpc's createErrorStatusObject): a ServerError is
 * the only message a client ever sees; an abort becomes CANCELLED (or DEADLINE_EXCEEDED when the
 * call's deadline caused it); anything else is INTERNAL with a generic message, and its stack goes to
 * the log.
 */
import { status } from "@grpc/grpc-js";
import type { ErrorCode } from "../../engine/serverError.ts";
import { ServerError } from "../../engine/serverError.ts";

const CODES: Record<ErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  UNAVAILABLE: status.UNAVAILABLE,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  INTERNAL: status.INTERNAL,
};

export interface CallStatus {
  code: status;
  details: string;
}

export interface ErrorLog {
  error(fields: object, message: string): void;
}

/**
 * The longest details a status carries. Values a client sent are cut where messages quote them
 * (serverError.ts echo); this is the backstop for any message that quotes one whole.
 */
export const MAX_DETAILS_CHARS = 2048;

export function toStatus(error: unknown, log: ErrorLog, context: object = {}): CallStatus {
  if (error instanceof ServerError) return { code: CODES[error.code], details: capped(error.details) };
  if (error instanceof Error || error instanceof DOMException) {
    if (error.name === "TimeoutError") return { code: status.DEADLINE_EXCEEDED, details: "deadline exceeded" };
    if (error.name === "AbortError") return { code: status.CANCELLED, details: "request cancelled" };
  }
  log.error({ ...context, err: error }, "request failed with an unexpected error");
  return { code: status.INTERNAL, details: "internal error; the server log has the details" };
}

/** Keeps the head (the field) and the tail (the bound and the flag) of an overlong message. */
function capped(details: string): string {
  if (details.length <= MAX_DETAILS_CHARS) return details;
  const keep = MAX_DETAILS_CHARS / 2 - 32;
  return `${details.slice(0, keep)} ...(${details.length - 2 * keep} characters cut)... ${details.slice(-keep)}`;
}
