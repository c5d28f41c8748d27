/**
 * The Open Inference Protocol over HTTP/REST (KServe v2, as Triton serves it) on the HTTP port, beside
 * the playground: the same answers as inference.GRPCInferenceService, through the same semantics
 * (oip/inferCall.ts, oip/modelDescription.ts, oip/repositoryCalls.ts), engine, limits, tokens and
 * error policy; only the framing is this file's.
 *
 *   GET  /v2                                          server metadata
 *   GET  /v2/health/live | /v2/health/ready           200, or 503 when not ready (no token needed)
 *   GET  /v2/models/<name>[/versions/<v>]             model metadata
 *   GET  /v2/models/<name>[/versions/<v>]/ready       200, or 503 when not ready (no token needed)
 *   GET  /v2/models/<name>[/versions/<v>]/config      Triton's model configuration
 *   POST /v2/models/<name>[/versions/<v>]/infer       JSON tensors, or Triton's binary tensor extension
 *   GET  /v2/models[/<name>[/versions/<v>]]/stats     per-version statistics
 *   POST /v2/repository/index                         every model version and its state
 *   POST /v2/repository/models/<name>/load | unload   model control (--model-control explicit)
 *
 * A refusal is Triton's {"error": "<message>"} with the HTTP status of its gRPC status (grpc/httpRefusal.ts).
 */
import type * as http from "node:http";
import { performance } from "node:perf_hooks";
import { status as grpcStatus } from "@grpc/grpc-js";
import type { ModelControl } from "../../engine/modelControl.ts";
import type { ModelRegistry } from "../../engine/modelRegistry.ts";
import { ServerError } from "../../engine/serverError.ts";
import type { Logger } from "../../logger.ts";
import type { ServerMetrics } from "../../metrics.ts";
import type { TokenTable } from "../grpc/authentication.ts";
import { type CallStatus, toStatus } from "../grpc/errorPolicy.ts";
import { BodyReader } from "../grpc/httpBody.ts";
import { HttpRefusal, httpStatusOf } from "../grpc/httpRefusal.ts";
import { authorise, type HttpGrant } from "../grpc/httpTokens.ts";
import type { InflightBytes } from "../grpc/inflightBytes.ts";
import { recordRequest } from "../grpc/requestMetrics.ts";
import { OTHER_FIELDS_BYTES, type RequestSizeLimits } from "../grpc/requestSize.ts";
import { admitInfer, answerRows } from "./inferCall.ts";
import { answerView, encodeInferResponse, encodeModelConfig } from "./inferEncoding.ts";
import {
  describedModel,
  modelMetadata,
  modelReady,
  type Readiness,
  serverMetadata,
  serverReady,
} from "./modelDescription.ts";
import {
  loadModel,
  modelStatistics,
  type RepositoryParameters,
  repositoryIndex,
  unloadModel,
} from "./repositoryCalls.ts";
import { HEADER_LENGTH, inferRequestFromBody, inRestTerms } from "./restRequest.ts";
import { encodeRestResponse } from "./restResponse.ts";

export interface RestApiOptions {
  tokens: TokenTable | null;
  /** The bound on request bytes held by calls in progress, shared with the gRPC port. */
  inflight: InflightBytes;
  receiveTimeoutMs: number;
  /** The most rows one request may carry (--max-batch). */
  maxBatch: number;
  /** gRPC's limits on a request (derived from the served models where not set). */
  sizes: RequestSizeLimits;
  /** ServerMetadata's name and version; default: package.json's. */
  server?: { name: string; version: string };
}

/** Bodies of repository requests: a few parameters. */
const MAX_SMALL_BODY_BYTES = 64 * 1024;

const HEADERS = { "cache-control": "no-store", "x-content-type-options": "nosniff" };

type Handler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  crossOrigin: CallStatus | undefined,
) => Promise<void>;

export function createRestApi(
  registry: ModelRegistry,
  control: ModelControl,
  health: Readiness,
  metrics: ServerMetrics,
  log: Logger,
  options: RestApiOptions,
): Handler {
  const { sizes, maxBatch } = options;
  // A batch of the largest request message's images, base64 in JSON, or of tensors written as JSON
  // text (a float takes up to 24 characters); binary tensor data needs less than either.
  const maxInferBodyBytes =
    Math.max(Math.ceil((sizes.maxMessageBytes * 4) / 3), sizes.maxTensorValues * maxBatch * 24) + OTHER_FIELDS_BYTES;
  const inferTooLarge = (bytes: number, max: number) =>
    `the request body is ${bytes} bytes, beyond the ${max} an inference request may have here: the largest request message (--max-message-bytes ${sizes.maxMessageBytes}, which follows --max-image-bytes) as base64 in JSON, or --max-batch ${maxBatch} rows of --max-tensor-values ${sizes.maxTensorValues} values as JSON text; raise --max-image-bytes for larger images`;
  const smallTooLarge = (bytes: number, max: number) =>
    `the request body is ${bytes} bytes, beyond the ${max} a repository request may have`;

  return async (req, res, crossOrigin) => {
    const started = performance.now();
    const url = new URL(req.url ?? "/", "http://v2");
    let method = "Rest";
    let model = "";
    let body: BodyReader | undefined;
    const controller = new AbortController();
    res.on("close", () => {
      if (!res.writableFinished) controller.abort(new DOMException("the client closed the connection", "AbortError"));
    });
    try {
      if (crossOrigin) throw new HttpRefusal(crossOrigin);
      const route = routeOf(req.method ?? "GET", url.pathname);
      method = route.method;
      model = route.model ?? "";
      // Health needs no token, as grpc.health.v1 and the protocol's gRPC health calls need none.
      if (route.method === "ServerLive") return sendJson(res, 200, { live: true });
      if (route.method === "ServerReady") {
        const ready = serverReady(health);
        return sendJson(res, ready ? 200 : 503, { ready });
      }
      if (route.method === "ModelReady") {
        const ready = modelReady(registry, health, model, route.version);
        return sendJson(res, ready ? 200 : 503, { ready });
      }
      const grant = authorise(req, options.tokens);
      const readBody = async (max: number, words: (bytes: number, max: number) => string) => {
        const encoding = req.headers["content-encoding"];
        if (encoding !== undefined && encoding !== "identity") {
          throw new HttpRefusal(
            {
              code: grpcStatus.INVALID_ARGUMENT,
              details: `Content-Encoding ${JSON.stringify(encoding)} is not accepted: send the body uncompressed (its bounds are counted as it arrives)`,
            },
            415,
          );
        }
        body = new BodyReader(req, max, options.inflight, options.receiveTimeoutMs, words);
        return body.read();
      };
      const answer = await handle(route, grant, readBody, req.headers, controller.signal);
      controller.signal.throwIfAborted();
      if (answer instanceof RawAnswer) sendRaw(res, 200, answer.headers, answer.body);
      else sendJson(res, 200, answer);
      record(model, method, grpcStatus.OK, started);
    } catch (error) {
      const refusal = error instanceof HttpRefusal ? error : undefined;
      const status = controller.signal.aborted
        ? toStatus(controller.signal.reason, log)
        : (refusal?.status ?? toStatus(inRestTerms(error), log, { method, model, transport: "http" }));
      record(model, method, status.code, started);
      if (controller.signal.aborted) res.destroy();
      else sendJson(res, httpStatusOf(status, refusal?.httpStatus), { error: status.details }, body?.unread ?? false);
    } finally {
      body?.release();
    }
  };

  function record(model: string, method: string, code: grpcStatus, started: number) {
    if (method === "Rest") return;
    recordRequest(registry, metrics, model, `Rest${method}`, code, started);
  }

  async function handle(
    route: Route,
    grant: HttpGrant,
    readBody: (max: number, words: (bytes: number, max: number) => string) => Promise<Buffer>,
    headers: http.IncomingHttpHeaders,
    signal: AbortSignal,
  ): Promise<unknown> {
    const { model = "", version } = route;
    switch (route.method) {
      case "ServerMetadata":
        return serverMetadata(options.server);
      case "ModelMetadata":
        grant.check(model, "the model in the URL");
        return modelMetadata(registry, describedModel(registry, model, version));
      case "ModelConfig":
        grant.check(model, "the model in the URL");
        return withoutNulls(encodeModelConfig(describedModel(registry, model, version), maxBatch));
      case "ModelStatistics":
        if (model) grant.check(model, "the model in the URL");
        else grant.checkEveryModel("statistics without a model cover every model");
        return modelStatistics(control, model, version);
      case "RepositoryIndex": {
        const parsed = jsonObject(await readBody(MAX_SMALL_BODY_BYTES, smallTooLarge), true);
        const unknown = Object.keys(parsed).find((key) => key !== "ready" && key !== "repository_name");
        if (unknown !== undefined)
          throw invalid(`the request body has unknown field ${JSON.stringify(unknown.slice(0, 64))}; known: ready`);
        if (parsed.ready !== undefined && typeof parsed.ready !== "boolean")
          throw invalid("ready must be true or false");
        return repositoryIndex(control, parsed.ready === true).models;
      }
      case "RepositoryModelLoad":
      case "RepositoryModelUnload": {
        grant.checkEveryModel(`${route.method} changes what every client is served`);
        const parameters = repositoryParameters(await readBody(MAX_SMALL_BODY_BYTES, smallTooLarge));
        if (route.method === "RepositoryModelLoad") await loadModel(control, model, parameters);
        else await unloadModel(control, model, parameters);
        return undefined;
      }
      case "ModelInfer": {
        grant.check(model, "the model in the URL");
        const raw = await readBody(maxInferBodyBytes, inferTooLarge);
        const { message, binaryOutputs } = inferRequestFromBody(
          raw,
          headerOf(headers, HEADER_LENGTH),
          model,
          version,
          sizes,
          maxBatch,
        );
        const { decoded, engine, rows } = admitInfer(registry, message, maxBatch);
        const results = await answerRows(engine, decoded, rows, signal);
        const { headers: answerHeaders, body: answerBody } = encodeRestResponse(
          encodeInferResponse(engine, results.map(answerView), decoded),
          binaryOutputs,
        );
        return new RawAnswer(answerHeaders, answerBody);
      }
      default:
        throw new Error(`no handler for ${route.method}. This is a bug.`);
    }
  }
}

/** An answer that is already its bytes (an inference response, JSON or binary), not an object to write as JSON. */
class RawAnswer {
  constructor(
    readonly headers: Record<string, string | number>,
    readonly body: Buffer,
  ) {}
}

// ---------------------------------------------------------------- routes
interface Route {
  method: string;
  model?: string;
  version: string;
}

const USAGE =
  "the Open Inference Protocol's REST endpoints are /v2, /v2/health/{live,ready}, /v2/models/<name>[/versions/<v>][/ready|/config|/infer|/stats], /v2/models/stats, /v2/repository/index and /v2/repository/models/<name>/{load,unload}";

/** The endpoint a method and path name; NOT_FOUND (404) or 405 for what none does. */
function routeOf(httpMethod: string, path: string): Route {
  const parts = path.split("/").slice(1);
  if (parts.length > 1 && parts.at(-1) === "") parts.pop();
  if (parts[0] !== "v2") throw notFound(path);
  const rest = parts.slice(1).map(pathPart);
  const want = (allowed: "GET" | "POST", method: string, extra: Partial<Route> = {}): Route => {
    if (httpMethod !== allowed && !(allowed === "GET" && httpMethod === "HEAD")) {
      throw new HttpRefusal(
        {
          code: grpcStatus.INVALID_ARGUMENT,
          details: `${httpMethod} ${path} is not served: ${method} takes ${allowed}`,
        },
        405,
      );
    }
    return { method, version: "", ...extra };
  };
  if (rest.length === 0) return want("GET", "ServerMetadata");
  if (rest[0] === "health" && rest.length === 2 && rest[1] === "live") return want("GET", "ServerLive");
  if (rest[0] === "health" && rest.length === 2 && rest[1] === "ready") return want("GET", "ServerReady");
  if (rest[0] === "repository") {
    if (rest.length === 2 && rest[1] === "index") return want("POST", "RepositoryIndex");
    if (rest.length === 4 && rest[1] === "models" && (rest[3] === "load" || rest[3] === "unload")) {
      return want("POST", rest[3] === "load" ? "RepositoryModelLoad" : "RepositoryModelUnload", { model: rest[2] });
    }
    throw notFound(path);
  }
  if (rest[0] !== "models" || rest.length < 2) throw notFound(path);
  if (rest.length === 2 && rest[1] === "stats") return want("GET", "ModelStatistics");
  const model = rest[1] as string;
  let at = 2;
  let version = "";
  if (rest[at] === "versions") {
    if (rest.length < 4) throw notFound(path);
    version = rest[at + 1] as string;
    at += 2;
  }
  const action = rest.slice(at);
  if (action.length === 0) return want("GET", "ModelMetadata", { model, version });
  if (action.length === 1) {
    const methods: Record<string, ["GET" | "POST", string]> = {
      ready: ["GET", "ModelReady"],
      config: ["GET", "ModelConfig"],
      infer: ["POST", "ModelInfer"],
      stats: ["GET", "ModelStatistics"],
    };
    const found = methods[action[0] as string];
    if (found) return want(found[0], found[1], { model, version });
  }
  throw notFound(path);
}

function notFound(path: string): HttpRefusal {
  return new HttpRefusal({ code: grpcStatus.NOT_FOUND, details: `no endpoint at ${path.slice(0, 200)}; ${USAGE}` });
}

/** A URL path segment, decoded; a malformed escape is the client's mistake. */
function pathPart(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw invalid(`the URL path segment ${JSON.stringify(segment.slice(0, 64))} is not valid percent-encoding`);
  }
}

function headerOf(headers: http.IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(",") : value;
}

// ---------------------------------------------------------------- bodies
const invalid = (details: string) => new ServerError("INVALID_ARGUMENT", details);

/** A JSON object body; an empty body is `{}` where `emptyIsObject`. */
function jsonObject(body: Buffer, emptyIsObject = false): Record<string, unknown> {
  if (body.length === 0 && emptyIsObject) return {};
  let value: unknown;
  try {
    value = JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw invalid(`the request body is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw invalid("the request body must be a JSON object");
  }
  return value as Record<string, unknown>;
}

/** A load or unload body: {"parameters": {name: boolean | number | string}}. */
function repositoryParameters(body: Buffer): RepositoryParameters {
  const root = jsonObject(body, true);
  const unknown = Object.keys(root).find((key) => key !== "parameters");
  if (unknown !== undefined)
    throw invalid(`the request body has unknown field ${JSON.stringify(unknown.slice(0, 64))}; known: parameters`);
  if (root.parameters === undefined) return {};
  if (typeof root.parameters !== "object" || root.parameters === null || Array.isArray(root.parameters)) {
    throw invalid("parameters must be a JSON object");
  }
  const parameters: RepositoryParameters = {};
  for (const [key, value] of Object.entries(root.parameters)) {
    if (typeof value !== "boolean" && typeof value !== "number" && typeof value !== "string") {
      throw invalid(`parameters.${key.slice(0, 64)} must be a boolean, a number or a string`);
    }
    parameters[key] = value;
  }
  return parameters;
}

/** Triton's configuration as JSON: absent fields left out rather than written as null. */
function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (typeof value !== "object" || value === null) return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => [k, withoutNulls(v)]),
  );
}

// ---------------------------------------------------------------- responses
function sendJson(res: http.ServerResponse, code: number, body: unknown, close = false): void {
  const text = body === undefined ? "" : JSON.stringify(body);
  sendRaw(res, code, { "content-type": "application/json; charset=utf-8" }, Buffer.from(text, "utf8"), close);
}

function sendRaw(
  res: http.ServerResponse,
  code: number,
  headers: Record<string, string | number>,
  body: Buffer,
  close = false,
): void {
  res.writeHead(code, {
    ...HEADERS,
    ...headers,
    "content-length": body.length,
    ...(close && { connection: "close" }),
  });
  res.end(res.req.method === "HEAD" ? undefined : body);
}
