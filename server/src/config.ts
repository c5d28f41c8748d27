/**
 * Server configuration: every flag and environment variable is read here and nowhere else. A flag
 * beats its environment variable, which beats the default. Every value is checked at start-up and an
 * error names the flag or variable it came from and the value given (TGI's `#[clap(long, env)]`).
 *
 * Each option is written once, as a row of OPTIONS: its flag, variable, default, help text and the
 * parser that checks it. The option keys and the types of ServerConfig's fields are derived from the
 * rows, so a row and the configuration cannot disagree; parseConfig composes only what spans rows
 * (ports that must differ, TLS files that go together, defaults derived from the machine).
 *
 * CONFIG_OPTIONS is exported so that deployment manifests, --help and docs/flags.md are checked against it
 * or generated from it (npm run docs:flags).
 */
import { availableParallelism } from "node:os";
import { ServerError } from "./engine/serverError.ts";
import { parseVersionPolicies, type VersionPolicies } from "./engine/versionPolicy.ts";
import { LOG_LEVELS } from "./logger.ts";
import { defaultDecodeSlots } from "./runtime/decodeSlots.ts";
// Raster formats only: vector and document formats (SVG, PDF) would run interpreters on the input.
import { RASTER_FORMATS, type RasterFormat } from "./runtime/imageHeader.ts";
import { PROVIDER_CHOICES } from "./runtime/providerChoice.ts";

export class ConfigError extends Error {
  override name = "ConfigError";
}

export const MODEL_CONTROL_MODES = ["none", "poll", "explicit"] as const;
export type ModelControlMode = (typeof MODEL_CONTROL_MODES)[number];

export const MODEL_ERROR_POLICIES = ["exit", "skip"] as const;
export type ModelErrorPolicy = (typeof MODEL_ERROR_POLICIES)[number];

/** How an option's text becomes its value. */
export interface OptionParser<T> {
  /** What the option accepts, as docs/flags.md shows it: "an integer in [0, 65535]". */
  readonly accepts: string;
  /** The value of `text`, or a ConfigError naming `source` (the flag, the variable or the default) and `text`. */
  parse(text: string, source: string): T;
}

const integer = (min: number, max: number): OptionParser<number> => {
  const accepts = `an integer in [${min}, ${max}]`;
  return {
    accepts,
    parse(text, source) {
      const n = Number(text);
      if (!/^-?\d+$/.test(text.trim()) || n < min || n > max) {
        throw new ConfigError(`${source} must be ${accepts}, got ${JSON.stringify(text)}`);
      }
      return n;
    },
  };
};

const oneOf = <T extends string>(choices: readonly T[]): OptionParser<T> => {
  const accepts = `one of ${choices.join(", ")}`;
  return {
    accepts,
    parse(text, source) {
      if (!(choices as readonly string[]).includes(text)) {
        throw new ConfigError(`${source} must be ${accepts}, got ${JSON.stringify(text)}`);
      }
      return text as T;
    },
  };
};

const nonEmpty: OptionParser<string> = {
  accepts: "any text but blank",
  parse(text, source) {
    if (text.trim() === "") throw new ConfigError(`${source} must not be empty`);
    return text;
  },
};

const splitList = (text: string): string[] =>
  text
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");

const commaList: OptionParser<string[]> = { accepts: "a comma-separated list", parse: splitList };

const IMAGE_FORMATS = `a comma-separated list of ${RASTER_FORMATS.join(", ")}`;
const imageFormatList: OptionParser<RasterFormat[]> = {
  accepts: IMAGE_FORMATS,
  parse(text, source) {
    const formats = splitList(text.toLowerCase());
    const bad = formats.find((f) => !(RASTER_FORMATS as readonly string[]).includes(f));
    if (bad !== undefined || formats.length === 0) {
      throw new ConfigError(`${source} must be ${IMAGE_FORMATS}, got ${JSON.stringify(text)}`);
    }
    return [...new Set(formats)] as RasterFormat[];
  },
};

const versionPolicyList: OptionParser<VersionPolicies> = {
  accepts: "a policy (latest, latest:N, all, specific:V[,V...]) and model=policy entries, separated by ;",
  parse(text, source) {
    try {
      return parseVersionPolicies(text, source);
    } catch (error) {
      if (error instanceof ServerError) throw new ConfigError(error.details);
      throw error;
    }
  },
};

/** One option, as OPTIONS writes it. */
interface OptionRow {
  flag: `--${string}`;
  env: `CTM_${string}`;
  /** The default, parsed as a given value is; absent: not set unless given (`description` says what then). */
  default?: string;
  description: string;
  parser: OptionParser<unknown>;
  /** Where the parsed value lands in ServerConfig under the option's own key; absent: parseConfig composes it. */
  at?: "config" | "limits";
  /** Given with any other --model-control, the option is refused before its value is read: it would do nothing. */
  onlyWithModelControl?: ModelControlMode;
}

const OPTIONS = {
  host: {
    flag: "--host",
    env: "CTM_HOST",
    default: "127.0.0.1",
    description: "address the gRPC server binds",
    parser: nonEmpty,
    at: "config",
  },
  port: {
    flag: "--port",
    env: "CTM_PORT",
    default: "50051",
    description: "gRPC port (0: any free port)",
    parser: integer(0, 65535),
    at: "config",
  },
  modelsDir: {
    flag: "--models-dir",
    env: "CTM_MODELS_DIR",
    default: "models",
    description:
      "folder of <name>/<version>/ model folders; --version-policy says which versions serve (default: the highest)",
    parser: nonEmpty,
    at: "config",
  },
  provider: {
    flag: "--provider",
    env: "CTM_PROVIDER",
    default: "auto",
    description: "execution provider: auto (CUDA if it loads, else CPU), cpu or cuda",
    parser: oneOf(PROVIDER_CHOICES),
    at: "config",
  },
  threads: {
    flag: "--threads",
    env: "CTM_THREADS",
    description: "intra-op threads per worker (default: available CPUs / workers, at least 1)",
    parser: integer(1, 1024),
  },
  workers: {
    flag: "--workers",
    env: "CTM_WORKERS",
    default: "1",
    description: "inference worker threads per model, each with its own sessions and batch",
    parser: integer(1, 64),
    at: "config",
  },
  workerNice: {
    flag: "--worker-nice",
    env: "CTM_WORKER_NICE",
    default: "5",
    description:
      "how many nice steps below the event loop the inference threads run (Linux; 0: equal), so that health checks and admissions stay prompt on saturated cores",
    parser: integer(0, 19),
    at: "config",
  },
  maxBatch: {
    flag: "--max-batch",
    env: "CTM_MAX_BATCH",
    default: "64",
    description: "most requests one batched tick run advances (per worker)",
    parser: integer(1, 4096),
    at: "config",
  },
  maxQueue: {
    flag: "--max-queue",
    env: "CTM_MAX_QUEUE",
    default: "256",
    description: "most requests waiting for a batch slot per model; beyond it: RESOURCE_EXHAUSTED",
    parser: integer(0, 1_000_000),
    at: "config",
  },
  /** Requests that gave a floor are lowered towards it, then refused (engine/loadController.ts). */
  latencyObjectiveMs: {
    flag: "--latency-objective-ms",
    env: "CTM_LATENCY_OBJECTIVE_MS",
    default: "0",
    description:
      "answer each request within this many milliseconds: under load, requests that give a floor (min_target_accuracy, min_target_consistency) are served at lower certified targets, and what would not fit even at the floors is refused with RESOURCE_EXHAUSTED (0: off)",
    parser: integer(0, 3_600_000),
    at: "config",
  },
  decodeSlots: {
    flag: "--decode-slots",
    env: "CTM_DECODE_SLOTS",
    description:
      "images decoded at once by libvips, all models together; the others wait their turn, and leave the line undecoded if their call ends (default: half the available CPUs, at least 1)",
    parser: integer(1, 1024),
  },
  streamWriteIdleMs: {
    flag: "--stream-write-idle-ms",
    env: "CTM_STREAM_WRITE_IDLE_MS",
    default: "30000",
    description:
      "how long a ClassifyStream may wait for its client to take a message before it ends with DEADLINE_EXCEEDED (its request is parked meanwhile and holds no batch slot)",
    parser: integer(1, 3_600_000),
    at: "config",
  },
  receiveTimeoutMs: {
    flag: "--receive-timeout-ms",
    env: "CTM_RECEIVE_TIMEOUT_MS",
    default: "30000",
    description:
      "how long a request may take to arrive: a gRPC message once its first byte has (a unary call's from the call's start), a playground request body once its headers have; longer: DEADLINE_EXCEEDED (HTTP 408) and the bytes are let go",
    parser: integer(1, 3_600_000),
    at: "config",
  },
  metricsHost: {
    flag: "--metrics-host",
    env: "CTM_METRICS_HOST",
    description: "address of the Prometheus /metrics endpoint (default: --host)",
    parser: nonEmpty,
  },
  metricsPort: {
    flag: "--metrics-port",
    env: "CTM_METRICS_PORT",
    default: "9464",
    description: "port of the /metrics endpoint (0: disabled)",
    parser: integer(0, 65535),
  },
  httpPort: {
    flag: "--http-port",
    env: "CTM_HTTP_PORT",
    default: "8080",
    description:
      "port of the browser playground and its JSON + server-sent-events API, on --host with the gRPC port's TLS and tokens (0: disabled)",
    parser: integer(0, 65535),
  },
  healthPort: {
    flag: "--health-port",
    env: "CTM_HEALTH_PORT",
    default: "0",
    description:
      "port of a second, plaintext grpc.health.v1 endpoint answered from a thread of its own, so that probes do not queue behind a saturated server; point orchestrators' probes here (0: disabled)",
    parser: integer(0, 65535),
  },
  healthStallMs: {
    flag: "--health-stall-ms",
    env: "CTM_HEALTH_STALL_MS",
    default: "5000",
    description:
      "on --health-port, how long the server's event loop may go without running before every service reads NOT_SERVING",
    parser: integer(1, 3_600_000),
  },
  graceMs: {
    flag: "--grace-ms",
    env: "CTM_GRACE_MS",
    default: "10000",
    description: "on SIGTERM/SIGINT, how long in-flight requests may finish before they are cancelled",
    parser: integer(0, 3_600_000),
    at: "config",
  },
  maxConnectionAgeMs: {
    flag: "--max-connection-age-ms",
    env: "CTM_MAX_CONNECTION_AGE_MS",
    default: "0",
    description:
      "close each client connection after this long, give or take 10% (HTTP/2 GOAWAY; its calls in flight get --grace-ms to finish), so that clients re-resolve and spread over new replicas (0: never)",
    parser: integer(0, 86_400_000),
    at: "config",
  },
  /**
   * Node stops reading a connection that nghttp2 has ended with its own GOAWAY, so without the ping its
   * socket is never closed (docs/reliability.md).
   */
  keepaliveMs: {
    flag: "--keepalive-ms",
    env: "CTM_KEEPALIVE_MS",
    default: "20000",
    description:
      "ping each client connection this often (HTTP/2 PING) and close it when no answer comes within --keepalive-timeout-ms, which also clears connections nghttp2 has ended (0: never)",
    parser: integer(0, 86_400_000),
    at: "config",
  },
  keepaliveTimeoutMs: {
    flag: "--keepalive-timeout-ms",
    env: "CTM_KEEPALIVE_TIMEOUT_MS",
    default: "10000",
    description: "how long a keepalive ping may go unanswered before the connection is closed",
    parser: integer(1, 3_600_000),
    at: "config",
  },
  maxConnectionIdleMs: {
    flag: "--max-connection-idle-ms",
    env: "CTM_MAX_CONNECTION_IDLE_MS",
    default: "300000",
    description:
      "close a client connection with no call open for this long (HTTP/2 GOAWAY; a gRPC client reconnects on its next call; 0: never)",
    parser: integer(0, 86_400_000),
    at: "config",
  },
  logLevel: {
    flag: "--log-level",
    env: "CTM_LOG_LEVEL",
    default: "info",
    description: `log level: ${LOG_LEVELS.join(", ")}`,
    parser: oneOf(LOG_LEVELS),
    at: "config",
  },
  tlsCert: {
    flag: "--tls-cert",
    env: "CTM_TLS_CERT",
    description: "PEM certificate chain for the gRPC port; with --tls-key, the port speaks only TLS",
    parser: nonEmpty,
  },
  tlsKey: { flag: "--tls-key", env: "CTM_TLS_KEY", description: "PEM private key of --tls-cert", parser: nonEmpty },
  tlsClientCa: {
    flag: "--tls-client-ca",
    env: "CTM_TLS_CLIENT_CA",
    description: "PEM CA bundle: clients must present a certificate it signed (mutual TLS; needs --tls-cert)",
    parser: nonEmpty,
  },
  authTokens: {
    flag: "--auth-tokens",
    env: "CTM_AUTH_TOKENS",
    description:
      "comma-separated bearer tokens a call must carry (authorization: Bearer <token>); prefer the variable or --auth-tokens-file, which stay out of the process list",
    parser: commaList,
  },
  authTokensFile: {
    flag: "--auth-tokens-file",
    env: "CTM_AUTH_TOKENS_FILE",
    description:
      "file of bearer tokens, one per line, optionally followed by the models it may call (see docs/reliability.md)",
    parser: nonEmpty,
  },
  maxMessageBytes: {
    flag: "--max-message-bytes",
    env: "CTM_MAX_MESSAGE_BYTES",
    description:
      "largest request message the server reads; larger ones: RESOURCE_EXHAUSTED (default: derived from the served models, the larger of --max-image-bytes if any takes images and --max-tensor-values x 4, plus 64 KiB for the other fields)",
    parser: integer(1024, 1024 * 1024 * 1024),
  },
  maxImageBytes: {
    flag: "--max-image-bytes",
    env: "CTM_MAX_IMAGE_BYTES",
    default: String(8 * 1024 * 1024),
    description:
      "largest encoded image a request may carry, enough for a phone photo; larger: RESOURCE_EXHAUSTED before the message is decoded (a model's input is small: npm run classify scales large images down before sending)",
    parser: integer(1, 1024 * 1024 * 1024),
    at: "limits",
  },
  maxTensorValues: {
    flag: "--max-tensor-values",
    env: "CTM_MAX_TENSOR_VALUES",
    description:
      "most values a request tensor may carry, read from its packed length before it is decoded; more: RESOURCE_EXHAUSTED (default: the largest input of the served models)",
    parser: integer(1, 256 * 1024 * 1024),
  },
  maxInflightBytes: {
    flag: "--max-inflight-bytes",
    env: "CTM_MAX_INFLIGHT_BYTES",
    default: String(128 * 1024 * 1024),
    description:
      "most bytes of request messages all calls in progress may hold at once; a message beyond it: RESOURCE_EXHAUSTED at once",
    parser: integer(1024, 64 * 1024 * 1024 * 1024),
    at: "limits",
  },
  maxImagePixels: {
    flag: "--max-image-pixels",
    env: "CTM_MAX_IMAGE_PIXELS",
    description:
      "largest width x height of an input image, checked from its header before decoding (default: derived from the served models, 4096 times the largest image input's pixels, at least 16777216 - a 4096 x 4096 photo - and at most 50000000)",
    parser: integer(1, 1_000_000_000),
  },
  maxImageSide: {
    flag: "--max-image-side",
    env: "CTM_MAX_IMAGE_SIDE",
    default: "16384",
    description: "largest width or height of an input image, checked from its header before decoding",
    parser: integer(1, 1_000_000),
    at: "limits",
  },
  imageFormats: {
    flag: "--image-formats",
    env: "CTM_IMAGE_FORMATS",
    default: RASTER_FORMATS.join(","),
    description: `comma-separated image formats accepted (raster only: ${RASTER_FORMATS.join(", ")})`,
    parser: imageFormatList,
    at: "limits",
  },
  maxTicks: {
    flag: "--max-ticks",
    env: "CTM_MAX_TICKS",
    default: "0",
    description: "most ticks any request may run (0: each model's own limit, from its manifest)",
    parser: integer(0, 1_000_000),
    at: "limits",
  },
  maxConcurrentStreams: {
    flag: "--max-concurrent-streams",
    env: "CTM_MAX_CONCURRENT_STREAMS",
    default: "256",
    description: "calls one client connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)",
    parser: integer(1, 1_000_000),
    at: "limits",
  },
  onModelError: {
    flag: "--on-model-error",
    env: "CTM_ON_MODEL_ERROR",
    default: "exit",
    description:
      "a model that fails to load at start-up: exit (the server does not start) or skip (serve the others; the broken one is reported not ready)",
    parser: oneOf(MODEL_ERROR_POLICIES),
    at: "config",
  },
  modelControl: {
    flag: "--model-control",
    env: "CTM_MODEL_CONTROL",
    default: "none",
    description:
      "how the served models change while the server runs: none (what loaded at start-up serves until shutdown), poll (the models folder is read again every --repository-poll-ms: new versions load, removed ones unload, changed ones reload) or explicit (load and unload requests, RepositoryModelLoad / LoadModel)",
    parser: oneOf(MODEL_CONTROL_MODES),
  },
  repositoryPollMs: {
    flag: "--repository-poll-ms",
    env: "CTM_REPOSITORY_POLL_MS",
    default: "15000",
    description: "with --model-control poll, how often the models folder is read again",
    parser: integer(10, 86_400_000),
    onlyWithModelControl: "poll",
  },
  loadModel: {
    flag: "--load-model",
    env: "CTM_LOAD_MODEL",
    description:
      "with --model-control explicit, the models loaded at start-up, comma-separated, or * for every one (default: none, as Triton's)",
    parser: commaList,
    onlyWithModelControl: "explicit",
  },
  versionPolicy: {
    flag: "--version-policy",
    env: "CTM_VERSION_POLICY",
    default: "latest:1",
    description:
      'which versions of each model serve: latest, latest:N, all or specific:V[,V...]; per model after ";" as model=policy, e.g. "latest:2; maze-ctm=specific:1"',
    parser: versionPolicyList,
  },
} as const satisfies Record<string, OptionRow>;

type Options = typeof OPTIONS;
export type ConfigKey = keyof Options;
type Parsed<K extends ConfigKey> = Options[K]["parser"] extends OptionParser<infer T> ? T : never;
/** An option's value: what its parser gives, or undefined for an option with no default that was not given. */
type OptionValue<K extends ConfigKey> = Options[K] extends { default: string } ? Parsed<K> : Parsed<K> | undefined;
type OptionValues = { [K in ConfigKey]: OptionValue<K> };
/** The options whose row says `at`, under their own keys. */
type Placed<At> = { [K in ConfigKey as Options[K] extends { at: At } ? K : never]: OptionValue<K> };

export interface ConfigOption extends OptionRow {
  key: ConfigKey;
}

export const CONFIG_OPTIONS: readonly ConfigOption[] = (Object.entries(OPTIONS) as [ConfigKey, OptionRow][]).map(
  ([key, row]) => ({ key, ...row }),
);

export interface ServerConfig extends Placed<"config"> {
  /** Intra-op threads of each worker's sessions. */
  threads: number;
  /** Images libvips decodes at once, for the whole process (runtime/decodeSlots.ts). */
  decodeSlots: number;
  /** null: no metrics endpoint. */
  metrics: { host: string; port: number } | null;
  /** null: no playground page (and no JSON + server-sent-events bridge) on its own HTTP port. */
  http: { host: string; port: number } | null;
  /** null: health is answered on the gRPC port only (healthPort.ts says why a second one helps). */
  health: { host: string; port: number; stallMs: number } | null;
  /** null: plaintext. Paths of PEM files; clientCa set: clients must present a certificate it signed. */
  tls: { cert: string; key: string; clientCa: string | null } | null;
  /** Bearer tokens given inline (comma-separated), and a file of them; both empty: no token check. */
  auth: { tokens: string[]; tokensFile: string | null };
  limits: RequestLimits;
  /** Which model versions serve, and how that changes while the server runs (engine/modelControl.ts). */
  modelControl: ModelControlConfig;
}

/** Bounds on what one request may ask of the server. */
export interface RequestLimits extends Placed<"limits"> {
  /** Largest gRPC message the server reads; 0: derived from the served models' inputs (requestLimits.ts). */
  maxMessageBytes: number;
  /** Most values a request's tensor may carry; 0: the largest served input. */
  maxTensorValues: number;
  /** Largest width x height of an image; 0: derived from the served models (imagePixelLimit.ts). */
  maxImagePixels: number;
}

export interface ModelControlConfig {
  mode: ModelControlMode;
  /** poll: how often the models folder is read again. */
  pollMs: number;
  /** explicit: the models loaded at start-up; ["*"]: every one. */
  loadModels: string[];
  versionPolicies: VersionPolicies;
}

/** Parses argv (without node and the script) and the environment. Returns "help" for --help / -h. */
export function parseConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  cpus = availableParallelism(),
): ServerConfig | "help" {
  const given = new Map<ConfigKey, { text: string; source: string }>();
  for (const option of CONFIG_OPTIONS) {
    const fromEnv = env[option.env];
    if (fromEnv !== undefined && fromEnv !== "") given.set(option.key, { text: fromEnv, source: option.env });
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
    given.set(option.key, { text: value, source: flag });
  }

  const sourceOf = (key: ConfigKey) => given.get(key)?.source ?? `the default of ${OPTIONS[key].flag}`;
  const parsed: Partial<Record<ConfigKey, unknown>> = {};
  for (const option of CONFIG_OPTIONS) {
    const wanted = option.onlyWithModelControl;
    // --model-control's row comes before the rows that name a mode, so its value is read by now.
    if (wanted !== undefined && given.has(option.key) && parsed.modelControl !== wanted) {
      throw new ConfigError(
        `${sourceOf(option.key)} applies only with --model-control ${wanted}; ${sourceOf("modelControl")} is ${parsed.modelControl}`,
      );
    }
    const text = given.get(option.key)?.text ?? option.default;
    if (text !== undefined) parsed[option.key] = option.parser.parse(text, sourceOf(option.key));
  }
  const values = parsed as OptionValues;
  const place = <At extends "config" | "limits">(at: At) =>
    Object.fromEntries(CONFIG_OPTIONS.filter((o) => o.at === at).map((o) => [o.key, values[o.key]])) as Placed<At>;

  const { host, port, workers } = values;
  const metricsHost = values.metricsHost ?? host;
  const { metricsPort, httpPort, healthPort } = values;
  // Every port on the same host must differ; on another host the metrics port may repeat one.
  const taken: [ConfigKey, number][] = [
    ["port", port],
    ["metricsPort", metricsHost === host ? metricsPort : 0],
    ["httpPort", httpPort],
    ["healthPort", healthPort],
  ];
  taken.forEach(([key, wanted], i) => {
    for (const [other, used] of taken.slice(0, i)) {
      if (wanted !== 0 && wanted === used) {
        throw new ConfigError(
          `${sourceOf(key)} (${wanted}) must differ from ${sourceOf(other)} (${used}) on the same host ${host}`,
        );
      }
    }
  });
  return {
    ...place("config"),
    threads: values.threads ?? Math.max(1, Math.floor(cpus / workers)),
    decodeSlots: values.decodeSlots ?? defaultDecodeSlots(cpus),
    metrics: metricsPort === 0 ? null : { host: metricsHost, port: metricsPort },
    http: httpPort === 0 ? null : { host, port: httpPort },
    health: healthPort === 0 ? null : { host, port: healthPort, stallMs: values.healthStallMs },
    tls: tlsOf(),
    auth: { tokens: values.authTokens ?? [], tokensFile: values.authTokensFile ?? null },
    limits: {
      ...place("limits"),
      maxMessageBytes: values.maxMessageBytes ?? 0,
      maxTensorValues: values.maxTensorValues ?? 0,
      maxImagePixels: values.maxImagePixels ?? 0,
    },
    modelControl: {
      mode: values.modelControl,
      pollMs: values.repositoryPollMs,
      loadModels: values.loadModel ?? [],
      versionPolicies: values.versionPolicy,
    },
  };

  function tlsOf(): ServerConfig["tls"] {
    const { tlsCert: cert, tlsKey: key, tlsClientCa: clientCa } = values;
    if (!cert && !key) {
      if (clientCa) throw new ConfigError(`${sourceOf("tlsClientCa")} needs --tls-cert and --tls-key`);
      return null;
    }
    if (!cert) throw new ConfigError(`${sourceOf("tlsKey")} needs --tls-cert as well`);
    if (!key) throw new ConfigError(`${sourceOf("tlsCert")} needs --tls-key as well`);
    return { cert, key, clientCa: clientCa ?? null };
  }
}

export function helpText(): string {
  const rows = CONFIG_OPTIONS.map((o) => {
    const fallback = o.default ? ` (default ${o.default})` : "";
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
