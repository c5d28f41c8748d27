/**
 * Server configuration: every flag and environment variable is read here and nowhere else. A flag
 * beats its environment variable, which beats the default. Every value is checked at start-up and an
 * error names the flag or variable it came from and the value given (TGI's `#[clap(long, env)]`).
 *
 * CONFIG_OPTIONS is exported so that deployment manifests can be checked against it.
 */
import { availableParallelism } from "node:os";
import { LOG_LEVELS, type LogLevel } from "./logger.ts";
import { PROVIDER_CHOICES, type ProviderChoice } from "./runtime/executionProvider.ts";

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
  /** null: no metrics endpoint. */
  metrics: { host: string; port: number } | null;
  /** How long shutdown waits for in-flight requests before cancelling them. */
  graceMs: number;
  logLevel: LogLevel;
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
  | "metricsHost"
  | "metricsPort"
  | "graceMs"
  | "logLevel";

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
    description: "folder of <name>/<version>/ model folders; the highest version of each is served",
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
    key: "graceMs",
    flag: "--grace-ms",
    env: "CTM_GRACE_MS",
    default: "10000",
    description: "on SIGTERM/SIGINT, how long in-flight requests may finish before they are cancelled",
  },
  {
    key: "logLevel",
    flag: "--log-level",
    env: "CTM_LOG_LEVEL",
    default: "info",
    description: `log level: ${LOG_LEVELS.join(", ")}`,
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
    metrics: metricsPort === 0 ? null : { host: metricsHost, port: metricsPort },
    graceMs: integer("graceMs", 0, 3_600_000),
    logLevel: choice("logLevel", LOG_LEVELS),
  };
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
