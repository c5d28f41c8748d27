/**
 * Server configuration: every flag and environment variable is read here and nowhere else. A flag
 * beats its environment variable, which beats the default. Every value is checked at start-up and an
 * error names the flag or variable it came from and the value given (TGI's `#[clap(long, env)]`).
 *
 * CONFIG_OPTIONS is exported so that deployment manifests can be checked against it.
 */
import { availableParallelism } from "node:os";
import { ServerError } from "./engine/serverError.ts";
import { parseVersionPolicies, type VersionPolicies } from "./engine/versionPolicy.ts";
import { LOG_LEVELS, type LogLevel } from "./logger.ts";
import { defaultDecodeSlots } from "./runtime/decodeSlots.ts";
// Raster formats only: vector and document formats (SVG, PDF) would run interpreters on the input.
import { RASTER_FORMATS, type RasterFormat } from "./runtime/imageHeader.ts";
import { PROVIDER_CHOICES, type ProviderChoice } from "./runtime/providerChoice.ts";

export interface ServerConfig {
  host: string;
  port: number;
  modelsDir: string;
  provider: ProviderChoice;
  /** Intra-op threads of each worker's sessions. */
  threads: number;
  /** Scheduler worker threads per model. */
  workers: number;
  /** How many nice steps below the event loop the inference threads run (Linux). */
  workerNice: number;
  /** Most requests one tick run advances (per worker). */
  maxBatch: number;
  /** Most requests waiting for a batch slot (per model) before RESOURCE_EXHAUSTED. */
  maxQueue: number;
  /**
   * The latency each model answers within by lowering requests that gave a floor towards it, and then
   * refusing (engine/loadController.ts); 0: off (queue up to maxQueue, as without it).
   */
  latencyObjectiveMs: number;
  /** Images libvips decodes at once, for the whole process (runtime/decodeSlots.ts). */
  decodeSlots: number;
  /**
   * How long a stream may wait for its client to take a message (HTTP/2 flow control) before it
   * ends with DEADLINE_EXCEEDED; meanwhile its request is parked and holds no batch slot.
   */
  streamWriteIdleMs: number;
  /**
   * How long a request may take to arrive: a gRPC request message once its first byte has (a unary
   * call's, with the end of its stream, from the call's start), a playground request body once its
   * headers have. Longer: the call ends with DEADLINE_EXCEEDED (HTTP 408).
   */
  receiveTimeoutMs: number;
  /** null: no metrics endpoint. */
  metrics: { host: string; port: number } | null;
  /** null: no playground page (and no JSON + server-sent-events bridge) on its own HTTP port. */
  http: { host: string; port: number } | null;
  /** null: health is answered on the gRPC port only (healthPort.ts says why a second one helps). */
  health: { host: string; port: number; stallMs: number } | null;
  /** How long shutdown waits for in-flight requests before cancelling them. */
  graceMs: number;
  /**
   * A client connection older than this (give or take 10%) is asked to go away, and its calls in flight
   * get `graceMs` to finish, so that long-lived clients re-resolve and reach new replicas; 0: never.
   */
  maxConnectionAgeMs: number;
  /**
   * Connection upkeep, so that no dead connection holds a socket for good: every connection is pinged
   * this often and closed when the answer takes longer than `keepaliveTimeoutMs`; one with no call
   * open for `maxConnectionIdleMs` is closed. 0: off. (Node stops reading a connection that nghttp2
   * has ended with its own GOAWAY, so without these its socket is never closed; docs/reliability.md.)
   */
  keepaliveMs: number;
  keepaliveTimeoutMs: number;
  maxConnectionIdleMs: number;
  logLevel: LogLevel;
  /** null: plaintext. Paths of PEM files; clientCa set: clients must present a certificate it signed. */
  tls: { cert: string; key: string; clientCa: string | null } | null;
  /** Bearer tokens given inline (comma-separated), and a file of them; both empty: no token check. */
  auth: { tokens: string[]; tokensFile: string | null };
  limits: RequestLimits;
  /** What a model folder that cannot be loaded does at start-up: stop the server, or be reported and skipped. */
  onModelError: ModelErrorPolicy;
  /** Which model versions serve, and how that changes while the server runs (engine/modelControl.ts). */
  modelControl: ModelControlConfig;
}

export interface ModelControlConfig {
  mode: ModelControlMode;
  /** poll: how often the models folder is read again. */
  pollMs: number;
  /** explicit: the models loaded at start-up; ["*"]: every one. */
  loadModels: string[];
  versionPolicies: VersionPolicies;
}

export const MODEL_CONTROL_MODES = ["none", "poll", "explicit"] as const;
export type ModelControlMode = (typeof MODEL_CONTROL_MODES)[number];

export const MODEL_ERROR_POLICIES = ["exit", "skip"] as const;
export type ModelErrorPolicy = (typeof MODEL_ERROR_POLICIES)[number];

/** Bounds on what one request may ask of the server. */
export interface RequestLimits {
  /** Largest gRPC message the server reads; 0: derived from the served models' inputs (requestLimits.ts). */
  maxMessageBytes: number;
  /** Largest encoded image a request may carry. */
  maxImageBytes: number;
  /** Most values a request's tensor may carry, read from its packed length before it is decoded; 0: the largest served input. */
  maxTensorValues: number;
  /** Most bytes of request messages that calls in progress may hold at once, all calls together. */
  maxInflightBytes: number;
  /** Largest width x height of an image, read from its header before any pixel is decoded; 0: derived from the served models (imagePixelLimit.ts). */
  maxImagePixels: number;
  /** Largest width or height of an image, likewise. */
  maxImageSide: number;
  imageFormats: RasterFormat[];
  /** Most ticks a request may run; 0: each model's own limit. */
  maxTicks: number;
  /** HTTP/2 streams (calls) one connection may have open at once. */
  maxConcurrentStreams: number;
}

export type ConfigKey =
  | "host"
  | "port"
  | "modelsDir"
  | "provider"
  | "threads"
  | "workers"
  | "workerNice"
  | "maxBatch"
  | "maxQueue"
  | "latencyObjectiveMs"
  | "decodeSlots"
  | "streamWriteIdleMs"
  | "receiveTimeoutMs"
  | "metricsHost"
  | "metricsPort"
  | "httpPort"
  | "healthPort"
  | "healthStallMs"
  | "graceMs"
  | "maxConnectionAgeMs"
  | "keepaliveMs"
  | "keepaliveTimeoutMs"
  | "maxConnectionIdleMs"
  | "logLevel"
  | "tlsCert"
  | "tlsKey"
  | "tlsClientCa"
  | "authTokens"
  | "authTokensFile"
  | "maxMessageBytes"
  | "maxImageBytes"
  | "maxTensorValues"
  | "maxInflightBytes"
  | "maxImagePixels"
  | "maxImageSide"
  | "imageFormats"
  | "maxTicks"
  | "maxConcurrentStreams"
  | "onModelError"
  | "modelControl"
  | "repositoryPollMs"
  | "loadModel"
  | "versionPolicy";

export interface ConfigOption {
  key: ConfigKey;
  flag: `--${string}`;
  env: `CTM_${string}`;
  /** The default as text; "" when it is derived (see `description`). */
  default: string;
  description: string;
}

export const CONFIG_OPTIONS: readonly ConfigOption[] = [
  { key: "host", flag: "--host", env: "CTM_HOST", default: "127.0.0.1", description: "address the gRPC server binds" },
  { key: "port", flag: "--port", env: "CTM_PORT", default: "50051", description: "gRPC port (0: any free port)" },
  {
    key: "modelsDir",
    flag: "--models-dir",
    env: "CTM_MODELS_DIR",
    default: "models",
    description:
      "folder of <name>/<version>/ model folders; --version-policy says which versions serve (default: the highest)",
  },
  {
    key: "provider",
    flag: "--provider",
    env: "CTM_PROVIDER",
    default: "auto",
    description: "execution provider: auto (CUDA if it loads, else CPU), cpu or cuda",
  },
  {
    key: "threads",
    flag: "--threads",
    env: "CTM_THREADS",
    default: "",
    description: "intra-op threads per worker (default: available CPUs / workers, at least 1)",
  },
  {
    key: "workers",
    flag: "--workers",
    env: "CTM_WORKERS",
    default: "1",
    description: "inference worker threads per model, each with its own sessions and batch",
  },
  {
    key: "workerNice",
    flag: "--worker-nice",
    env: "CTM_WORKER_NICE",
    default: "5",
    description:
      "how many nice steps below the event loop the inference threads run (Linux; 0: equal), so that health checks and admissions stay prompt on saturated cores",
  },
  {
    key: "maxBatch",
    flag: "--max-batch",
    env: "CTM_MAX_BATCH",
    default: "64",
    description: "most requests one batched tick run advances (per worker)",
  },
  {
    key: "maxQueue",
    flag: "--max-queue",
    env: "CTM_MAX_QUEUE",
    default: "256",
    description: "most requests waiting for a batch slot per model; beyond it: RESOURCE_EXHAUSTED",
  },
  {
    key: "latencyObjectiveMs",
    flag: "--latency-objective-ms",
    env: "CTM_LATENCY_OBJECTIVE_MS",
    default: "0",
    description:
      "answer each request within this many milliseconds: under load, requests that give a floor (min_target_accuracy, min_target_consistency) are served at lower certified targets, and what would not fit even at the floors is refused with RESOURCE_EXHAUSTED (0: off)",
  },
  {
    key: "decodeSlots",
    flag: "--decode-slots",
    env: "CTM_DECODE_SLOTS",
    default: "",
    description:
      "images decoded at once by libvips, all models together; the others wait their turn, and leave the line undecoded if their call ends (default: half the available CPUs, at least 1)",
  },
  {
    key: "streamWriteIdleMs",
    flag: "--stream-write-idle-ms",
    env: "CTM_STREAM_WRITE_IDLE_MS",
    default: "30000",
    description:
      "how long a ClassifyStream may wait for its client to take a message before it ends with DEADLINE_EXCEEDED (its request is parked meanwhile and holds no batch slot)",
  },
  {
    key: "receiveTimeoutMs",
    flag: "--receive-timeout-ms",
    env: "CTM_RECEIVE_TIMEOUT_MS",
    default: "30000",
    description:
      "how long a request may take to arrive: a gRPC message once its first byte has (a unary call's from the call's start), a playground request body once its headers have; longer: DEADLINE_EXCEEDED (HTTP 408) and the bytes are let go",
  },
  {
    key: "metricsHost",
    flag: "--metrics-host",
    env: "CTM_METRICS_HOST",
    default: "",
    description: "address of the Prometheus /metrics endpoint (default: --host)",
  },
  {
    key: "metricsPort",
    flag: "--metrics-port",
    env: "CTM_METRICS_PORT",
    default: "9464",
    description: "port of the /metrics endpoint (0: disabled)",
  },
  {
    key: "httpPort",
    flag: "--http-port",
    env: "CTM_HTTP_PORT",
    default: "8080",
    description:
      "port of the browser playground and its JSON + server-sent-events API, on --host with the gRPC port's TLS and tokens (0: disabled)",
  },
  {
    key: "healthPort",
    flag: "--health-port",
    env: "CTM_HEALTH_PORT",
    default: "0",
    description:
      "port of a second, plaintext grpc.health.v1 endpoint answered from a thread of its own, so that probes do not queue behind a saturated server; point orchestrators' probes here (0: disabled)",
  },
  {
    key: "healthStallMs",
    flag: "--health-stall-ms",
    env: "CTM_HEALTH_STALL_MS",
    default: "5000",
    description:
      "on --health-port, how long the server's event loop may go without running before every service reads NOT_SERVING",
  },
  {
    key: "graceMs",
    flag: "--grace-ms",
    env: "CTM_GRACE_MS",
    default: "10000",
    description: "on SIGTERM/SIGINT, how long in-flight requests may finish before they are cancelled",
  },
  {
    key: "maxConnectionAgeMs",
    flag: "--max-connection-age-ms",
    env: "CTM_MAX_CONNECTION_AGE_MS",
    default: "0",
    description:
      "close each client connection after this long, give or take 10% (HTTP/2 GOAWAY; its calls in flight get --grace-ms to finish), so that clients re-resolve and spread over new replicas (0: never)",
  },
  {
    key: "keepaliveMs",
    flag: "--keepalive-ms",
    env: "CTM_KEEPALIVE_MS",
    default: "20000",
    description:
      "ping each client connection this often (HTTP/2 PING) and close it when no answer comes within --keepalive-timeout-ms, which also clears connections nghttp2 has ended (0: never)",
  },
  {
    key: "keepaliveTimeoutMs",
    flag: "--keepalive-timeout-ms",
    env: "CTM_KEEPALIVE_TIMEOUT_MS",
    default: "10000",
    description: "how long a keepalive ping may go unanswered before the connection is closed",
  },
  {
    key: "maxConnectionIdleMs",
    flag: "--max-connection-idle-ms",
    env: "CTM_MAX_CONNECTION_IDLE_MS",
    default: "300000",
    description:
      "close a client connection with no call open for this long (HTTP/2 GOAWAY; a gRPC client reconnects on its next call; 0: never)",
  },
  {
    key: "logLevel",
    flag: "--log-level",
    env: "CTM_LOG_LEVEL",
    default: "info",
    description: `log level: ${LOG_LEVELS.join(", ")}`,
  },
  {
    key: "tlsCert",
    flag: "--tls-cert",
    env: "CTM_TLS_CERT",
    default: "",
    description: "PEM certificate chain for the gRPC port; with --tls-key, the port speaks only TLS",
  },
  { key: "tlsKey", flag: "--tls-key", env: "CTM_TLS_KEY", default: "", description: "PEM private key of --tls-cert" },
  {
    key: "tlsClientCa",
    flag: "--tls-client-ca",
    env: "CTM_TLS_CLIENT_CA",
    default: "",
    description: "PEM CA bundle: clients must present a certificate it signed (mutual TLS; needs --tls-cert)",
  },
  {
    key: "authTokens",
    flag: "--auth-tokens",
    env: "CTM_AUTH_TOKENS",
    default: "",
    description:
      "comma-separated bearer tokens a call must carry (authorization: Bearer <token>); prefer the variable or --auth-tokens-file, which stay out of the process list",
  },
  {
    key: "authTokensFile",
    flag: "--auth-tokens-file",
    env: "CTM_AUTH_TOKENS_FILE",
    default: "",
    description:
      "file of bearer tokens, one per line, optionally followed by the models it may call (see docs/reliability.md)",
  },
  {
    key: "maxMessageBytes",
    flag: "--max-message-bytes",
    env: "CTM_MAX_MESSAGE_BYTES",
    default: "",
    description:
      "largest request message the server reads; larger ones: RESOURCE_EXHAUSTED (default: derived from the served models, the larger of --max-image-bytes if any takes images and --max-tensor-values x 4, plus 64 KiB for the other fields)",
  },
  {
    key: "maxImageBytes",
    flag: "--max-image-bytes",
    env: "CTM_MAX_IMAGE_BYTES",
    default: String(8 * 1024 * 1024),
    description:
      "largest encoded image a request may carry, enough for a phone photo; larger: RESOURCE_EXHAUSTED before the message is decoded (a model's input is small: npm run classify scales large images down before sending)",
  },
  {
    key: "maxTensorValues",
    flag: "--max-tensor-values",
    env: "CTM_MAX_TENSOR_VALUES",
    default: "",
    description:
      "most values a request tensor may carry, read from its packed length before it is decoded; more: RESOURCE_EXHAUSTED (default: the largest input of the served models)",
  },
  {
    key: "maxInflightBytes",
    flag: "--max-inflight-bytes",
    env: "CTM_MAX_INFLIGHT_BYTES",
    default: String(128 * 1024 * 1024),
    description:
      "most bytes of request messages all calls in progress may hold at once; a message beyond it: RESOURCE_EXHAUSTED at once",
  },
  {
    key: "maxImagePixels",
    flag: "--max-image-pixels",
    env: "CTM_MAX_IMAGE_PIXELS",
    default: "",
    description:
      "largest width x height of an input image, checked from its header before decoding (default: derived from the served models, 4096 times the largest image input's pixels, at least 16777216 - a 4096 x 4096 photo - and at most 50000000)",
  },
  {
    key: "maxImageSide",
    flag: "--max-image-side",
    env: "CTM_MAX_IMAGE_SIDE",
    default: "16384",
    description: "largest width or height of an input image, checked from its header before decoding",
  },
  {
    key: "imageFormats",
    flag: "--image-formats",
    env: "CTM_IMAGE_FORMATS",
    default: RASTER_FORMATS.join(","),
    description: `comma-separated image formats accepted (raster only: ${RASTER_FORMATS.join(", ")})`,
  },
  {
    key: "maxTicks",
    flag: "--max-ticks",
    env: "CTM_MAX_TICKS",
    default: "0",
    description: "most ticks any request may run (0: each model's own limit, from its manifest)",
  },
  {
    key: "maxConcurrentStreams",
    flag: "--max-concurrent-streams",
    env: "CTM_MAX_CONCURRENT_STREAMS",
    default: "256",
    description: "calls one client connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)",
  },
  {
    key: "onModelError",
    flag: "--on-model-error",
    env: "CTM_ON_MODEL_ERROR",
    default: "exit",
    description:
      "a model that fails to load at start-up: exit (the server does not start) or skip (serve the others; the broken one is reported not ready)",
  },
  {
    key: "modelControl",
    flag: "--model-control",
    env: "CTM_MODEL_CONTROL",
    default: "none",
    description:
      "how the served models change while the server runs: none (what loaded at start-up serves until shutdown), poll (the models folder is read again every --repository-poll-ms: new versions load, removed ones unload, changed ones reload) or explicit (load and unload requests, RepositoryModelLoad / LoadModel)",
  },
  {
    key: "repositoryPollMs",
    flag: "--repository-poll-ms",
    env: "CTM_REPOSITORY_POLL_MS",
    default: "15000",
    description: "with --model-control poll, how often the models folder is read again",
  },
  {
    key: "loadModel",
    flag: "--load-model",
    env: "CTM_LOAD_MODEL",
    default: "",
    description:
      "with --model-control explicit, the models loaded at start-up, comma-separated, or * for every one (default: none, as Triton's)",
  },
  {
    key: "versionPolicy",
    flag: "--version-policy",
    env: "CTM_VERSION_POLICY",
    default: "latest:1",
    description:
      'which versions of each model serve: latest, latest:N, all or specific:V[,V...]; per model after ";" as model=policy, e.g. "latest:2; maze-ctm=specific:1"',
  },
];

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Where a value came from, for error messages. */
interface Raw {
  value: string;
  source: string;
}

/** Parses argv (without node and the script) and the environment. Returns "help" for --help / -h. */
export function parseConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  cpus = availableParallelism(),
): ServerConfig | "help" {
  const raw = new Map<ConfigKey, Raw>();
  for (const option of CONFIG_OPTIONS) {
    const fromEnv = env[option.env];
    if (fromEnv !== undefined && fromEnv !== "") raw.set(option.key, { value: fromEnv, source: option.env });
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--help" || arg === "-h") return "help";
    const [flag, inline] = arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    const option = CONFIG_OPTIONS.find((o) => o.flag === flag);
    if (!option) throw new ConfigError(`unknown argument ${JSON.stringify(arg)}; see --help`);
    const value = inline ?? argv[++i];
    if (value === undefined || (inline === undefined && value.startsWith("--")))
      throw new ConfigError(`${flag} needs a value`);
    raw.set(option.key, { value, source: flag });
  }

  const text = (key: ConfigKey): Raw => {
    const given = raw.get(key);
    if (given) return given;
    const option = CONFIG_OPTIONS.find((o) => o.key === key) as ConfigOption;
    return { value: option.default, source: `the default of ${option.flag}` };
  };
  const integer = (key: ConfigKey, min: number, max: number): number => {
    const { value, source } = text(key);
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || n < min || n > max) {
      throw new ConfigError(`${source} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
    }
    return n;
  };
  const choice = <T extends string>(key: ConfigKey, choices: readonly T[]): T => {
    const { value, source } = text(key);
    if (!(choices as readonly string[]).includes(value)) {
      throw new ConfigError(`${source} must be one of ${choices.join(", ")}, got ${JSON.stringify(value)}`);
    }
    return value as T;
  };
  const nonEmpty = (key: ConfigKey): string => {
    const { value, source } = text(key);
    if (value.trim() === "") throw new ConfigError(`${source} must not be empty`);
    return value;
  };

  const host = nonEmpty("host");
  const port = integer("port", 0, 65535);
  const workers = integer("workers", 1, 64);
  const threads = raw.has("threads") ? integer("threads", 1, 1024) : Math.max(1, Math.floor(cpus / workers));
  const metricsPort = integer("metricsPort", 0, 65535);
  const metricsHost = raw.has("metricsHost") ? nonEmpty("metricsHost") : host;
  if (metricsPort !== 0 && metricsPort === port && metricsHost === host) {
    throw new ConfigError(
      `${text("metricsPort").source} (${metricsPort}) must differ from ${text("port").source} (${port}) on the same host ${host}`,
    );
  }
  const httpPort = integer("httpPort", 0, 65535);
  const healthPort = integer("healthPort", 0, 65535);
  const healthStallMs = integer("healthStallMs", 1, 3_600_000);
  const taken: [ConfigKey, number][] = [
    ["port", port],
    ["metricsPort", metricsHost === host ? metricsPort : 0],
  ];
  for (const [key, wanted] of [
    ["httpPort", httpPort],
    ["healthPort", healthPort],
  ] as const) {
    for (const [other, used] of taken) {
      if (wanted !== 0 && wanted === used) {
        throw new ConfigError(
          `${text(key).source} (${wanted}) must differ from ${text(other).source} (${used}) on the same host ${host}`,
        );
      }
    }
    taken.push([key, wanted]);
  }
  return {
    host,
    port,
    modelsDir: nonEmpty("modelsDir"),
    provider: choice("provider", PROVIDER_CHOICES),
    threads,
    workers,
    workerNice: integer("workerNice", 0, 19),
    maxBatch: integer("maxBatch", 1, 4096),
    maxQueue: integer("maxQueue", 0, 1_000_000),
    latencyObjectiveMs: integer("latencyObjectiveMs", 0, 3_600_000),
    decodeSlots: raw.has("decodeSlots") ? integer("decodeSlots", 1, 1024) : defaultDecodeSlots(cpus),
    streamWriteIdleMs: integer("streamWriteIdleMs", 1, 3_600_000),
    receiveTimeoutMs: integer("receiveTimeoutMs", 1, 3_600_000),
    metrics: metricsPort === 0 ? null : { host: metricsHost, port: metricsPort },
    http: httpPort === 0 ? null : { host, port: httpPort },
    health: healthPort === 0 ? null : { host, port: healthPort, stallMs: healthStallMs },
    graceMs: integer("graceMs", 0, 3_600_000),
    maxConnectionAgeMs: integer("maxConnectionAgeMs", 0, 86_400_000),
    keepaliveMs: integer("keepaliveMs", 0, 86_400_000),
    keepaliveTimeoutMs: integer("keepaliveTimeoutMs", 1, 3_600_000),
    maxConnectionIdleMs: integer("maxConnectionIdleMs", 0, 86_400_000),
    logLevel: choice("logLevel", LOG_LEVELS),
    tls: tlsOf(),
    auth: {
      tokens: text("authTokens")
        .value.split(",")
        .map((t) => t.trim())
        .filter((t) => t !== ""),
      tokensFile: raw.has("authTokensFile") ? nonEmpty("authTokensFile") : null,
    },
    limits: {
      maxMessageBytes: raw.has("maxMessageBytes") ? integer("maxMessageBytes", 1024, 1024 * 1024 * 1024) : 0,
      maxImageBytes: integer("maxImageBytes", 1, 1024 * 1024 * 1024),
      maxTensorValues: raw.has("maxTensorValues") ? integer("maxTensorValues", 1, 256 * 1024 * 1024) : 0,
      maxInflightBytes: integer("maxInflightBytes", 1024, 64 * 1024 * 1024 * 1024),
      maxImagePixels: raw.has("maxImagePixels") ? integer("maxImagePixels", 1, 1_000_000_000) : 0,
      maxImageSide: integer("maxImageSide", 1, 1_000_000),
      imageFormats: formatList(),
      maxTicks: integer("maxTicks", 0, 1_000_000),
      maxConcurrentStreams: integer("maxConcurrentStreams", 1, 1_000_000),
    },
    onModelError: choice("onModelError", MODEL_ERROR_POLICIES),
    modelControl: modelControlOf(),
  };

  function modelControlOf(): ModelControlConfig {
    const mode = choice("modelControl", MODEL_CONTROL_MODES);
    const needs = (key: ConfigKey, wanted: ModelControlMode) => {
      if (raw.has(key) && mode !== wanted) {
        throw new ConfigError(
          `${text(key).source} applies only with --model-control ${wanted}; ${text("modelControl").source} is ${mode}`,
        );
      }
    };
    needs("repositoryPollMs", "poll");
    needs("loadModel", "explicit");
    const loadModels = text("loadModel")
      .value.split(",")
      .map((m) => m.trim())
      .filter((m) => m !== "");
    let versionPolicies: VersionPolicies;
    const policy = text("versionPolicy");
    try {
      versionPolicies = parseVersionPolicies(policy.value, policy.source);
    } catch (error) {
      if (error instanceof ServerError) throw new ConfigError(error.details);
      throw error;
    }
    return { mode, pollMs: integer("repositoryPollMs", 10, 86_400_000), loadModels, versionPolicies };
  }

  function tlsOf(): ServerConfig["tls"] {
    const cert = raw.has("tlsCert") ? nonEmpty("tlsCert") : null;
    const key = raw.has("tlsKey") ? nonEmpty("tlsKey") : null;
    const clientCa = raw.has("tlsClientCa") ? nonEmpty("tlsClientCa") : null;
    if (!cert && !key) {
      if (clientCa) throw new ConfigError(`${text("tlsClientCa").source} needs --tls-cert and --tls-key`);
      return null;
    }
    if (!cert) throw new ConfigError(`${text("tlsKey").source} needs --tls-cert as well`);
    if (!key) throw new ConfigError(`${text("tlsCert").source} needs --tls-key as well`);
    return { cert, key, clientCa };
  }

  function formatList(): RasterFormat[] {
    const { value, source } = text("imageFormats");
    const formats = value
      .split(",")
      .map((f) => f.trim().toLowerCase())
      .filter((f) => f !== "");
    const bad = formats.find((f) => !(RASTER_FORMATS as readonly string[]).includes(f));
    if (bad !== undefined || formats.length === 0) {
      throw new ConfigError(
        `${source} must be a comma-separated list of ${RASTER_FORMATS.join(", ")}, got ${JSON.stringify(value)}`,
      );
    }
    return [...new Set(formats)] as RasterFormat[];
  }
}

export function helpText(): string {
  const rows = CONFIG_OPTIONS.map((o) => {
    const fallback = o.default === "" ? "" : ` (default ${o.default})`;
    return `  ${`${o.flag} <value>`.padEnd(24)} ${o.env.padEnd(18)} ${o.description}${fallback}`;
  });
  return [
    "Usage: npm start -- [options]",
    "",
    "Serves every model in the models folder over gRPC (ctm.v1.CtmService, grpc.health.v1, reflection).",
    "Each option can also be set through its environment variable; a flag wins over the variable.",
    "",
    `  ${"flag".padEnd(24)} ${"environment".padEnd(18)} meaning`,
    ...rows,
    `  ${"--help".padEnd(24)} ${"".padEnd(18)} print this help`,
  ].join("\n");
}
