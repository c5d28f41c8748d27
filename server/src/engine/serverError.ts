/**
 * The only kind of error whose message a client sees. Codes are the canonical gRPC status names, but
 * the engine that raises them knows nothing of gRPC: the transport's error policy maps them.
 */
export type ErrorCode =
  | "INVALID_ARGUMENT"
  | "NOT_FOUND"
  | "RESOURCE_EXHAUSTED"
  | "FAILED_PRECONDITION"
  | "UNAVAILABLE"
  | "DEADLINE_EXCEEDED"
  | "INTERNAL";

export class ServerError extends Error {
  override name = "ServerError";

  constructor(
    readonly code: ErrorCode,
    readonly details: string,
  ) {
    super(details);
  }
}

/** Shorthand for the most common case: a request field out of bounds. */
export function invalidArgument(details: string): ServerError {
  return new ServerError("INVALID_ARGUMENT", details);
}
