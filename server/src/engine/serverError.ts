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

/** How much of a client's own value a message quotes back. */
const ECHO_CHARS = 128;
const ECHO_ENTRIES = 16;

/**
 * A value from the request, quoted for a message and cut short: a 15 MiB model name or a shape of
 * three million entries would otherwise come back whole in the status (a ~40 MB trailer).
 * Strings come back JSON-quoted, lists as `[a, b, ...]`; either says how long the whole was.
 */
export function echo(value: string | readonly unknown[]): string {
  if (typeof value === "string") {
    if (value.length <= ECHO_CHARS) return JSON.stringify(value);
    return `${JSON.stringify(value.slice(0, ECHO_CHARS))}... (${value.length} characters)`;
  }
  if (value.length <= ECHO_ENTRIES) return `[${value.join(", ")}]`;
  return `[${value.slice(0, ECHO_ENTRIES).join(", ")}, ...] (${value.length} entries)`;
}
