/**
 * Bearer-token authentication and per-model authorisation, as a grpc-js server interceptor, so that
 * no handler runs for a call that is not let in.
 *
 * Tokens come from --auth-tokens / CTM_AUTH_TOKENS (each may call every model) and from
 * --auth-tokens-file, one per line: `<token> [model ...]`, where listed models restrict the token to
 * them. A call carries `authorization: Bearer <token>`. No or an unknown token: UNAUTHENTICATED. A
 * known token calling a model it is not granted: PERMISSION_DENIED. Loading and unloading models change
 * what every client is served, so they need a token granted every model (one without a model list);
 * so do statistics of every model at once. grpc.health.v1 is exempt, so that
 * orchestrators' probes, which carry no secrets, keep working; the metrics port is separate HTTP.
 *
 * Tokens are compared as SHA-256 digests with timingSafeEqual, against every known token without an
 * early exit, so the time a check takes says nothing about how much of a guess was right.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import type { ServerConfig } from "../../config.ts";
import { echo } from "../../engine/serverError.ts";

/** Health checks never need a token: grpc.health.v1 here, a protocol's own in its GuardedService. */
const EXEMPT_PREFIX = "/grpc.health.v1.Health/";
/** Shorter tokens are guessable; refuse them at start-up rather than serve behind them. */
export const MIN_TOKEN_LENGTH = 16;
/** A token is one header-safe word: visible ASCII, no spaces. */
const TOKEN_PATTERN = /^[\x21-\x7e]+$/;

interface Grant {
  digest: Buffer;
  /** null: every model. */
  models: ReadonlySet<string> | null;
}

export class TokenTable {
  private constructor(private readonly grants: readonly Grant[]) {}

  get size(): number {
    return this.grants.length;
  }

  /** The configured tokens, or null when none are configured (no token check at all). */
  static load(auth: ServerConfig["auth"]): TokenTable | null {
    const grants: Grant[] = [];
    auth.tokens.forEach((token, i) => {
      grants.push(grantOf(token, null, `token ${i + 1} of --auth-tokens / CTM_AUTH_TOKENS`));
    });
    if (auth.tokensFile) grants.push(...readTokensFile(auth.tokensFile));
    return grants.length > 0 ? new TokenTable(grants) : null;
  }

  /** The grant of `token`, or undefined. Takes the same time whichever token matches, or none. */
  find(token: string): Grant | undefined {
    const digest = sha256(token);
    let found: Grant | undefined;
    for (const grant of this.grants) if (timingSafeEqual(grant.digest, digest) && !found) found = grant;
    return found;
  }
}

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

function grantOf(token: string, models: string[] | null, where: string): Grant {
  if (!TOKEN_PATTERN.test(token)) throw new Error(`${where}: a token must be visible ASCII without spaces`);
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new Error(`${where}: a token must have at least ${MIN_TOKEN_LENGTH} characters, got ${token.length}`);
  }
  return { digest: sha256(token), models: models && models.length > 0 ? new Set(models) : null };
}

function readTokensFile(path: string): Grant[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new Error(`--auth-tokens-file: cannot read ${path}: ${(error as Error).message}`);
  }
  const grants: Grant[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const words = line.replace(/#.*/, "").trim().split(/\s+/).filter(Boolean);
    if (words.length === 0) return;
    const [token, ...models] = words as [string, ...string[]];
    grants.push(grantOf(token, models, `${path} line ${i + 1}`));
  });
  if (grants.length === 0) throw new Error(`--auth-tokens-file: ${path} holds no tokens`);
  return grants;
}

/**
 * What the token check knows of one service's calls. Each protocol describes its own
 * (ctmV1/ctmAccess.ts, oip/oipAccess.ts), so that this check needs no protocol's message shapes.
 */
export interface GuardedService {
  /** The full service name, e.g. ctm.v1.CtmService. */
  service: string;
  /** Methods any caller may call without a token: the protocol's own health checks. */
  open?: readonly string[];
  /** The model a call to `method` names and the request field naming it; undefined for a call about none. */
  modelOf(method: string, message: object): { model: string; field: string } | undefined;
  /** Why a call to `method` concerns every model, for the refusal; undefined for other calls. */
  everyModelOf(method: string, message: unknown): string | undefined;
}

/**
 * The refusal of a call that concerns every model (`why`) by a token restricted to `models`, or
 * undefined when the token may make it (it is granted every model). The HTTP port applies it too.
 */
export function everyModelRefusal(why: string, models: ReadonlySet<string> | null): string | undefined {
  if (!models) return undefined;
  return `${why}: it needs a bearer token granted every model (one listed without models); this one is granted: ${[...models].join(", ")}`;
}

/**
 * Refuses calls without a known token, and calls to models their token is not granted; `services` says
 * which calls name a model and which concern every model (calls to any other service name none).
 */
export function authInterceptor(table: TokenTable, services: readonly GuardedService[]): grpc.ServerInterceptor {
  const exempt = new Set(services.flatMap(({ service, open = [] }) => open.map((name) => `/${service}/${name}`)));
  return (method, call) => {
    if (method.path.startsWith(EXEMPT_PREFIX) || exempt.has(method.path)) return new grpc.ServerInterceptingCall(call);
    const guarded = services.find(({ service }) => method.path.startsWith(`/${service}/`));
    const name = method.path.slice(method.path.lastIndexOf("/") + 1);
    let grant: Grant | undefined;
    let refused = false;
    const refuse = (code: grpc.status, details: string) => {
      refused = true;
      call.sendStatus({ code, details });
    };
    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            const header = metadata.get("authorization");
            if (header.length === 0) {
              return refuse(
                grpc.status.UNAUTHENTICATED,
                `${method.path} needs a bearer token: send metadata "authorization: Bearer <token>"`,
              );
            }
            const match = /^Bearer\s+(\S+)\s*$/i.exec(String(header[0]));
            if (header.length > 1 || !match) {
              return refuse(
                grpc.status.UNAUTHENTICATED,
                `metadata "authorization" must be exactly one "Bearer <token>" value`,
              );
            }
            grant = table.find(match[1] as string);
            if (!grant) return refuse(grpc.status.UNAUTHENTICATED, "the bearer token in metadata is not valid");
            nextMetadata(metadata);
          },
          onReceiveMessage(message, nextMessage) {
            if (refused) return;
            const every = guarded?.everyModelOf(name, message);
            const refusal = every === undefined ? undefined : everyModelRefusal(every, grant?.models ?? null);
            if (refusal) return refuse(grpc.status.PERMISSION_DENIED, refusal);
            const named = typeof message === "object" && message !== null ? guarded?.modelOf(name, message) : undefined;
            if (named !== undefined && grant?.models && !grant.models.has(named.model)) {
              const { model, field } = named;
              return refuse(
                grpc.status.PERMISSION_DENIED,
                `this bearer token may not call model ${echo(model)} (request field ${field}); it is granted: ${[...grant.models].join(", ")}`,
              );
            }
            nextMessage(message);
          },
          onReceiveHalfClose(nextHalfClose) {
            if (!refused) nextHalfClose();
          },
        });
      },
    });
  };
}
