/**
 * A refusal on the HTTP port, and the HTTP status each gRPC status maps to there: one table for the
 * playground's API and the Open Inference Protocol's REST endpoints.
 */
import { status as grpcStatus } from "@grpc/grpc-js";
import type { CallStatus } from "./errorPolicy.ts";

export const HTTP_CODES: Partial<Record<grpcStatus, number>> = {
  [grpcStatus.INVALID_ARGUMENT]: 400,
  [grpcStatus.FAILED_PRECONDITION]: 400,
  [grpcStatus.UNAUTHENTICATED]: 401,
  [grpcStatus.PERMISSION_DENIED]: 403,
  [grpcStatus.NOT_FOUND]: 404,
  [grpcStatus.RESOURCE_EXHAUSTED]: 429,
  [grpcStatus.CANCELLED]: 499,
  [grpcStatus.UNAVAILABLE]: 503,
  [grpcStatus.DEADLINE_EXCEEDED]: 504,
};

/** The HTTP status of `status`, unless `httpStatus` says otherwise; 500 for INTERNAL and the rest. */
export function httpStatusOf(status: CallStatus, httpStatus?: number): number {
  return httpStatus ?? HTTP_CODES[status.code] ?? 500;
}

/** A refusal the HTTP port gives itself (a token check, a slow body), with the status its client sees. */
export class HttpRefusal extends Error {
  /** `httpStatus`: when the status's usual HTTP code does not fit (408 for a body that came too slowly). */
  constructor(
    readonly status: CallStatus,
    readonly httpStatus?: number,
  ) {
    super(status.details);
  }
}
