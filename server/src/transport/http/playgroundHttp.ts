/**
 * The playground's HTTP port: the page (server/playground/, all assets local) and a small JSON +
 * server-sent-events bridge onto the same engines as gRPC.
 *
 * One path, not a copy: a JSON body becomes the ClassifyRequest message gRPC would have decoded
 * (jsonRequest.ts), then goes through the same decodeClassifyRequest, registry, engine (validation,
 * limits, queue, halt policy), encodeTick/encodeResult and error policy, and is counted in the same
 * request metrics (method "HttpClassifyStream"). Ticks go out as `event: tick` with the TickUpdate's
 * proto field names; a failure as `event: error` with the status name and the server's words, or, when
 * nothing was sent yet, as an HTTP status with the same JSON body.
 *
 * Same TLS and tokens as the gRPC port: with --tls-cert the port speaks only HTTPS (and with
 * --tls-client-ca wants a client certificate); with tokens, every /api/ call needs
 * `Authorization: Bearer <token>`, granted per model as on gRPC. The page itself holds no data and is
 * served to anyone, so that it can ask for the token.
 *
 * A request body is counted against --max-inflight-bytes before it is read (its declared length, or
 * each chunk of a chunked one as it comes) and must arrive within --receive-timeout-ms; a client that
 * leaves mid-upload is CANCELLED, not a server error. Bound to a loopback address, the port answers
 * only requests addressed to a loopback name (a page elsewhere that rebinds its own name to 127.0.0.1
 * gets 421), and the API refuses requests from another origin (403); no page may frame this one.
 */
import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { status as grpcStatus } from "@grpc/grpc-js";
import type { ServerConfig } from "../../config.ts";
import { type ModelRegistry, nameOf } from "../../engine/modelRegistry.ts";
import { echo, ServerError } from "../../engine/serverError.ts";
import { listenError } from "../../listenError.ts";
import type { Logger } from "../../logger.ts";
import type { ServerMetrics } from "../../metrics.ts";
import { decodeClassifyRequest } from "../ctmV1/classifyDecoding.ts";
import { oversizeRequest } from "../ctmV1/classifyWeight.ts";
import { encodeModelInfo, encodeResult, encodeTick } from "../ctmV1/responseEncoding.ts";
import type { TokenTable } from "../grpc/authentication.ts";
import { type CallStatus, toStatus } from "../grpc/errorPolicy.ts";
import { BodyReader } from "../grpc/httpBody.ts";
import { HttpRefusal, httpStatusOf } from "../grpc/httpRefusal.ts";
import { authorise, type HttpGrant as Grant } from "../grpc/httpTokens.ts";
import type { InflightBytes } from "../grpc/inflightBytes.ts";
import { OTHER_FIELDS_BYTES, type RequestSizeLimits } from "../grpc/requestSize.ts";
import { classifyRequestFromJson } from "./jsonRequest.ts";

export const PLAYGROUND_DIR = fileURLToPath(new URL("../../../playground", import.meta.url));
const METHOD = "HttpClassifyStream";

/** The page's files: a fixed list, so no request path ever reaches the file system. */
const STATIC: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/index.html": { file: "index.html", type: "text/html; charset=utf-8" },
  "/playground.js": { file: "playground.js", type: "text/javascript; charset=utf-8" },
  "/playground.css": { file: "playground.css", type: "text/css; charset=utf-8" },
};

const HEADERS = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  // Everything the page uses is its own; drawn and dropped images become data: or blob: URLs. No other
  // page may frame it (a framed page can be clicked on by whoever framed it); X-Frame-Options for
  // browsers that predate frame-ancestors.
  "content-security-policy":
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
};

/** Names a loopback-bound port answers to (the port itself is not checked: a rebinding page uses it too). */
const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

export interface PlaygroundOptions {
  host: string;
  port: number;
  tls: ServerConfig["tls"];
  tokens: TokenTable | null;
  /** gRPC's limits on a request (derived from the served models where not set). */
  sizes: RequestSizeLimits;
  /** The bound on request bytes held by calls in progress, shared with the gRPC port. */
  inflight: InflightBytes;
  /** How long a stream may wait for its client to take an event (--stream-write-idle-ms). */
  streamWriteIdleMs: number;
  /** How long a request body may take to arrive once its headers have (--receive-timeout-ms). */
  receiveTimeoutMs: number;
  /**
   * Answers /v2 and everything under it (the Open Inference Protocol over REST, oip/restApi.ts), after
   * the loopback Host check; `crossOrigin` is set for a request a page of another origin sent.
   */
  v2?: (req: http.IncomingMessage, res: http.ServerResponse, crossOrigin: CallStatus | undefined) => Promise<void>;
}

export interface PlaygroundServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

export async function servePlayground(
  options: PlaygroundOptions,
  registry: ModelRegistry,
  metrics: ServerMetrics,
  log: Logger,
): Promise<PlaygroundServer> {
  // The JSON of the largest request gRPC would take: an image grows by base64's third, and a float
  // written as JSON text takes up to 24 characters.
  const { sizes } = options;
  const maxBodyBytes =
    Math.max(Math.ceil((sizes.maxMessageBytes * 4) / 3), sizes.maxTensorValues * 24) + OTHER_FIELDS_BYTES;
  /** The model label of a request's metrics: a name the client made up would add a series for good. */
  const label = (model: string) =>
    model === "" ? "(none)" : registry.listed().some((listed) => nameOf(listed) === model) ? model : "(unknown)";
  // Models and their sample lists do not change while the server runs: read each labels file once.
  const samplesOf = new Map<string, { file: string; label: number }[]>();
  const cachedSamples = (dir: string, labelsFile: string | undefined) => {
    const key = `${dir}\0${labelsFile ?? ""}`;
    let list = samplesOf.get(key);
    if (!list) {
      list = sampleList(dir, labelsFile);
      samplesOf.set(key, list);
    }
    return list;
  };
  const loopback = isLoopback(options.host);
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    route(req, res).catch((error: unknown) => {
      const status = statusOf(error, log, { transport: "http", path: req.url });
      if (!res.headersSent) sendError(res, status);
      else res.destroy();
    });
  };
  // Node's own limits, in step with ours: the headers within --receive-timeout-ms, the whole request
  // (headers, then a body that has the same again) within twice it.
  const timeouts = { headersTimeout: options.receiveTimeoutMs, requestTimeout: 2 * options.receiveTimeoutMs };
  const server = options.tls
    ? https.createServer(
        {
          ...timeouts,
          cert: readFileSync(options.tls.cert),
          key: readFileSync(options.tls.key),
          ...(options.tls.clientCa && {
            ca: readFileSync(options.tls.clientCa),
            requestCert: true,
            rejectUnauthorized: true,
          }),
        },
        handler,
      )
    : http.createServer(timeouts, handler);

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://playground").pathname;
    const misdirected = loopback ? foreignHost(req) : undefined;
    if (misdirected) return sendError(res, misdirected, 421);
    const page = STATIC[path];
    if (page && (req.method === "GET" || req.method === "HEAD")) {
      const body = readFileSync(join(PLAYGROUND_DIR, page.file));
      res.writeHead(200, { ...HEADERS, "content-type": page.type, "content-length": body.length });
      res.end(req.method === "HEAD" ? undefined : body);
      return;
    }
    // The Open Inference Protocol's REST endpoints share the port; a page of another origin may not call them.
    if (options.v2 && (path === "/v2" || path.startsWith("/v2/"))) return options.v2(req, res, foreignOrigin(req));
    if (!path.startsWith("/api/")) return sendError(res, notFound(`no page at ${path}; the playground is at /`));
    const crossOrigin = foreignOrigin(req);
    if (crossOrigin) return sendError(res, crossOrigin);
    const grant = authorise(req, options.tokens);
    if (path === "/api/models" && req.method === "GET") {
      const models = registry.listed().map((model) => {
        const info = encodeModelInfo(model);
        const engine = model.ready ? model.engine : undefined;
        const manifest = engine?.definition.manifest;
        return {
          ...info,
          // Not in ModelInfo (yet): [heads, *token grid] of TickUpdate.attention, [] without one.
          attention_shape: manifest?.attention?.shape ?? [],
          samples: engine ? cachedSamples(engine.definition.dir, manifest?.samples) : [],
        };
      });
      return sendJson(res, 200, { models });
    }
    const sample = /^\/api\/models\/([^/]+)\/samples\/([^/]+)$/.exec(path);
    if (sample && req.method === "GET") {
      const [name, file] = [pathPart(sample[1] as string), pathPart(sample[2] as string)];
      grant.check(name, "model");
      const { definition } = registry.get(name, 0);
      const listed = cachedSamples(definition.dir, definition.manifest.samples).find((s) => s.file === file);
      if (!listed) throw new ServerError("NOT_FOUND", `model "${name}" has no sample ${JSON.stringify(file)}`);
      const body = readFileSync(resolve(definition.dir, samplesDir(definition.manifest.samples), listed.file));
      res.writeHead(200, { ...HEADERS, "content-type": imageType(listed.file), "content-length": body.length });
      res.end(body);
      return;
    }
    if (path === "/api/classify" && req.method === "POST") return classify(req, res, grant);
    return sendError(res, notFound(`no ${req.method} ${path}; the API is GET /api/models and POST /api/classify`));
  }

  async function classify(req: http.IncomingMessage, res: http.ServerResponse, grant: Grant): Promise<void> {
    const started = performance.now();
    const controller = new AbortController();
    // The browser closed the page or pressed stop (mid-upload too): the engine drops the request at its
    // next tick, and the call counts as CANCELLED.
    res.on("close", () => {
      if (!res.writableFinished) controller.abort(new DOMException("the client closed the connection", "AbortError"));
    });
    let model = "";
    let sent = false;
    const body = new BodyReader(
      req,
      maxBodyBytes,
      options.inflight,
      options.receiveTimeoutMs,
      (bytes, max) =>
        `the request body is ${bytes} bytes, beyond the ${max} this server reads: an image of up to --max-image-bytes, base64-encoded, or a tensor of up to --max-tensor-values values, as JSON; raise --max-image-bytes for larger images`,
    );
    try {
      const message = classifyRequestFromJson(parseJson(await body.read()));
      model = message.model ?? "";
      grant.check(model, "model");
      const refusal = oversizeRequest(
        {
          imageBytes: message.image?.data?.length ?? 0,
          tensorValues: message.tensor?.values?.length ?? 0,
          shapeEntries: message.tensor?.shape?.length ?? 0,
        },
        sizes,
      );
      if (refusal) throw refusal;
      const decoded = decodeClassifyRequest(message);
      const engine = registry.get(decoded.model, decoded.version);
      model = engine.name;
      const job = {
        ...decoded.job,
        streamTicks: true,
        pacedByReader: true,
        onInput: (input: Float32Array) => {
          // Before any tick: the preprocessed input, for the page to draw attention over.
          start();
          write("input", { shape: engine.definition.manifest.input.shape, values: Array.from(input) });
        },
      };
      for await (const event of engine.classify(job, controller.signal)) {
        const result = event.result ? encodeResult(engine, event.result, []) : undefined;
        if (event.tick) {
          start();
          if (!write("tick", encodeTick(event.tick, result))) await drained(res, options.streamWriteIdleMs);
        }
      }
      controller.signal.throwIfAborted();
      metrics.requestFinished(label(model), METHOD, "OK", (performance.now() - started) / 1000);
      res.end();
    } catch (error) {
      // Whatever failed once the client had gone, it was the client that went.
      const status = controller.signal.aborted
        ? toStatus(controller.signal.reason, log)
        : statusOf(error, log, { method: METHOD, model });
      metrics.requestFinished(
        label(model),
        METHOD,
        grpcStatus[status.code] ?? String(status.code),
        (performance.now() - started) / 1000,
      );
      if (controller.signal.aborted) res.destroy();
      else if (!sent) sendError(res, status, error instanceof HttpRefusal ? error.httpStatus : undefined, body.unread);
      else {
        write("error", errorBody(status));
        res.end();
      }
    } finally {
      body.release();
    }

    function start(): void {
      if (sent) return;
      sent = true;
      res.writeHead(200, { ...HEADERS, "content-type": "text/event-stream; charset=utf-8", connection: "keep-alive" });
    }
    function write(event: string, data: unknown): boolean {
      return res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    }
  }

  const port = await new Promise<number>((resolvePort, reject) => {
    server.once("error", (error) =>
      reject(listenError("the playground", options.host, options.port, "--http-port", error)),
    );
    server.listen(options.port, options.host, () => resolvePort((server.address() as AddressInfo).port));
  });
  const scheme = options.tls ? "https" : "http";
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  return {
    port,
    url: `${scheme}://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${port}/`,
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
      }),
  };
}

// ---------------------------------------------------------------- helpers
function notFound(details: string): CallStatus {
  return { code: grpcStatus.NOT_FOUND, details };
}

function errorBody(status: CallStatus): { code: string; message: string } {
  return { code: grpcStatus[status.code] ?? String(status.code), message: status.details };
}

/** The error policy, plus the two statuses only the token check gives (gRPC's interceptor sends those itself). */
function statusOf(error: unknown, log: Logger, context: object): CallStatus {
  return error instanceof HttpRefusal ? error.status : toStatus(error, log, context);
}

/** `close`: the request's body was not read, so the connection is closed rather than drained. */
function sendError(res: http.ServerResponse, status: CallStatus, httpStatus?: number, close = false): void {
  sendJson(res, httpStatusOf(status, httpStatus), errorBody(status), close);
}

function sendJson(res: http.ServerResponse, code: number, body: unknown, close = false): void {
  const text = JSON.stringify(body);
  res.writeHead(code, {
    ...HEADERS,
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    ...(close && { connection: "close" }),
  });
  res.end(text);
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** 421 for a request whose Host names something other than this loopback-bound port. */
function foreignHost(req: http.IncomingMessage): CallStatus | undefined {
  const host = (req.headers.host ?? "").toLowerCase();
  const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.replace(/:\d*$/, "");
  if (LOOPBACK_HOSTS.has(name) || /^127\.\d+\.\d+\.\d+$/.test(name)) return undefined;
  return {
    code: grpcStatus.PERMISSION_DENIED,
    details: `this server listens on a loopback address and answers only requests addressed to it (localhost, 127.0.0.1 or [::1]), not to ${echo(host)}: a page that points its own name at this machine (DNS rebinding) must not reach it`,
  };
}

/** 403 for an API request a page of another origin sent (the browser says so in Origin). */
function foreignOrigin(req: http.IncomingMessage): CallStatus | undefined {
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  let originHost: string | undefined;
  try {
    originHost = new URL(origin).host;
  } catch {
    originHost = undefined;
  }
  if (originHost !== undefined && originHost === (req.headers.host ?? "").toLowerCase()) return undefined;
  return {
    code: grpcStatus.PERMISSION_DENIED,
    details: `the API answers only the playground's own page; this request came from ${echo(origin)}`,
  };
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString("utf8"));
  } catch (error) {
    throw new ServerError("INVALID_ARGUMENT", `the request body is not valid JSON: ${(error as Error).message}`);
  }
}

function samplesDir(labelsFile: string | undefined): string {
  return labelsFile ? join(labelsFile, "..") : "samples";
}

/** The model's samples as its labels file lists them; none when it has no such file. */
function sampleList(dir: string, labelsFile: string | undefined): { file: string; label: number }[] {
  if (!labelsFile) return [];
  try {
    const list = JSON.parse(readFileSync(resolve(dir, labelsFile), "utf8")) as { file: string; label: number }[];
    // Only plain file names: a listed path must not lead out of the samples folder.
    return list
      .filter((s) => typeof s.file === "string" && /^[\w.-]+$/.test(s.file))
      .map(({ file, label }) => ({ file, label }));
  } catch {
    return [];
  }
}

/** A URL path segment, decoded; a malformed escape is the client's mistake, not a server error. */
function pathPart(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new ServerError(
      "INVALID_ARGUMENT",
      `the URL path segment ${JSON.stringify(segment)} is not valid percent-encoding`,
    );
  }
}

function imageType(file: string): string {
  if (file.endsWith(".png")) return "image/png";
  if (file.endsWith(".jpg") || file.endsWith(".jpeg")) return "image/jpeg";
  if (file.endsWith(".json")) return "application/json";
  return "application/octet-stream";
}

/**
 * Resolves on 'drain', or when the response closes first; rejects with DEADLINE_EXCEEDED, as a gRPC
 * stream does, when the browser takes nothing for `idleMs` (its request is parked meanwhile).
 */
function drained(res: http.ServerResponse, idleMs: number): Promise<void> {
  if (res.destroyed) return Promise.resolve();
  return new Promise((done, fail) => {
    const finish = () => {
      clearTimeout(timer);
      res.removeListener("drain", finish);
      res.removeListener("close", finish);
      done();
    };
    const timer = setTimeout(() => {
      res.removeListener("drain", finish);
      res.removeListener("close", finish);
      fail(
        new ServerError(
          "DEADLINE_EXCEEDED",
          `the client took no message for ${idleMs} ms (--stream-write-idle-ms); the stream was ended to free its place in the batch`,
        ),
      );
    }, idleMs);
    res.once("drain", finish);
    res.once("close", finish);
  });
}
