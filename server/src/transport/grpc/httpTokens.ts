/**
 * Bearer tokens on the HTTP port, as on gRPC (authentication.ts): `Authorization: Bearer <token>`,
 * compared against the same table, granted per model the same way.
 */
import type * as http from "node:http";
import { status as grpcStatus } from "@grpc/grpc-js";
import { echo } from "../../engine/serverError.ts";
import { everyModelRefusal, type TokenTable } from "./authentication.ts";
import { HttpRefusal } from "./httpRefusal.ts";

export interface HttpGrant {
  /** Throws PERMISSION_DENIED when the token may not call `model` (named by request field `field`). */
  check(model: string, field: string): void;
  /** Throws PERMISSION_DENIED when the token may not make a call that concerns every model (`why`). */
  checkEveryModel(why: string): void;
}

const ANYONE: HttpGrant = { check: () => {}, checkEveryModel: () => {} };

/** The request's grant; throws UNAUTHENTICATED without a valid token. No tokens configured: anyone. */
export function authorise(req: http.IncomingMessage, tokens: TokenTable | null): HttpGrant {
  if (!tokens) return ANYONE;
  const header = req.headers.authorization;
  const refuse = (code: grpcStatus, details: string) => new HttpRefusal({ code, details });
  if (header === undefined)
    throw refuse(grpcStatus.UNAUTHENTICATED, `this server needs a bearer token: send "Authorization: Bearer <token>"`);
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) throw refuse(grpcStatus.UNAUTHENTICATED, `header "Authorization" must be exactly one "Bearer <token>"`);
  const grant = tokens.find(match[1] as string);
  if (!grant) throw refuse(grpcStatus.UNAUTHENTICATED, "the bearer token is not valid");
  return {
    check(model, field) {
      if (grant.models && !grant.models.has(model))
        throw refuse(
          grpcStatus.PERMISSION_DENIED,
          `this bearer token may not call model ${echo(model)} (request field ${field}); it is granted: ${[...grant.models].join(", ")}`,
        );
    },
    checkEveryModel(why) {
      const refusal = everyModelRefusal(why, grant.models);
      if (refusal) throw refuse(grpcStatus.PERMISSION_DENIED, refusal);
    },
  };
}
