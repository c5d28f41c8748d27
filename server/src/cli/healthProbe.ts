/**
 * Asks a running server's gRPC health service whether it is SERVING; exits 0 if so, 1 if not.
 * The container HEALTHCHECK runs it (Kubernetes probes speak gRPC health natively and need no client).
 *
 *   npm run health -- [--service <name>] [--timeout-ms <n>]
 *        [--tls-ca <pem> [--tls-cert <pem> --tls-key <pem>] [--server-name <name>]]
 *
 * (The image's HEALTHCHECK runs the same file as `node --import tsx server/src/cli/healthProbe.ts`.)
 *
 * Health needs no bearer token (see transport/grpc/authentication.ts), but a TLS port needs a TLS client:
 * the probe uses one when the server's CTM_TLS_CERT is set, trusting --tls-ca, and presents
 * --tls-cert/--tls-key when the server asks for client certificates.
 *
 * The address comes from the server's own configuration (CTM_HOST, CTM_PORT and the rest of the
 * environment, read by config.ts), so the probe always asks the port the server in the same container
 * was told to bind: its health port when CTM_HEALTH_PORT is set (plaintext, answered from its own
 * thread), its gRPC port otherwise. A wildcard bind address is asked through loopback.
 */
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { createHealthClient } from "../client/healthClient.ts";
import { ConfigError, parseConfig } from "../config.ts";
import { callerPath } from "./callerPath.ts";
import { describeConnectionFailure } from "./connectionFailure.ts";

const USAGE = `Usage: npm run health -- [options]

Asks the server's gRPC health service (grpc.health.v1.Health/Check) whether it is SERVING.

  --service <name>      service to ask about ("" is the whole server; default "")
  --timeout-ms <n>      give up after n milliseconds (default 3000)
  --tls-ca <pem>        CA that signed the server's certificate (needed when the server uses TLS)
  --tls-cert <pem>      client certificate, for a server with --tls-client-ca (mutual TLS)
  --tls-key <pem>       private key of --tls-cert
  --server-name <name>  name to check the server certificate against (default: the certificate's
                        address, 127.0.0.1 for a wildcard bind)

The address is the server's: CTM_HOST and CTM_HEALTH_PORT (plaintext) when set, CTM_PORT otherwise,
as the server reads them.
Exit status: 0 SERVING, 1 anything else (NOT_SERVING, unreachable, timeout), 2 bad usage.
In the container image the HEALTHCHECK runs it without npm: node --import tsx server/src/cli/healthProbe.ts`;

/** Where a client reaches a server bound to `host`: a wildcard bind is reached through loopback. */
export function probeAddress(host: string, port: number): string {
  if (host === "0.0.0.0") return `127.0.0.1:${port}`;
  if (host === "::" || host === "[::]") return `[::1]:${port}`;
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * One grpc.health.v1.Health/Check call; resolves to the status, or to the error's text (for a failed
 * connection, what to check).
 */
export function checkHealth(
  address: string,
  serviceName: string,
  timeoutMs: number,
  credentials = grpc.credentials.createInsecure(),
  channelOptions: grpc.ChannelOptions = {},
): Promise<string> {
  const client = createHealthClient(address, credentials, channelOptions);
  return client.Check({ service: serviceName }, { deadline: Date.now() + timeoutMs }).then(
    (response) => {
      client.close();
      return response.status ?? "UNKNOWN";
    },
    (error: grpc.ServiceError) => {
      client.close();
      const unreachable = describeConnectionFailure(error, address, {
        address: "",
        tls: "--tls-ca",
        usingTls: credentials._isSecure(),
      });
      return `${grpc.status[error.code] ?? error.code}: ${unreachable ?? error.details}`;
    },
  );
}

interface ProbeOptions {
  service: string;
  timeoutMs: number;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  serverName?: string;
}

function parseArgs(argv: readonly string[]): ProbeOptions | "help" {
  const options: ProbeOptions = { service: "", timeoutMs: 3000 };
  const files = { "--tls-ca": "tlsCa", "--tls-cert": "tlsCert", "--tls-key": "tlsKey" } as const;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if (arg === "--help" || arg === "-h") return "help";
    if (arg === "--service" && value !== undefined) options.service = value;
    else if (arg === "--timeout-ms" && value !== undefined && /^\d+$/.test(value) && Number(value) > 0)
      options.timeoutMs = Number(value);
    else if (arg !== undefined && arg in files && value !== undefined)
      options[files[arg as keyof typeof files]] = value;
    else if (arg === "--server-name" && value !== undefined) options.serverName = value;
    else throw new ConfigError(`unexpected argument ${JSON.stringify(arg)}${value === undefined ? "" : ` ${value}`}`);
    i++;
  }
  return options;
}

async function main(): Promise<number> {
  let options: ReturnType<typeof parseArgs>;
  let address: string;
  let credentials: grpc.ChannelCredentials;
  try {
    options = parseArgs(process.argv.slice(2));
    const config = parseConfig([], process.env);
    if (options === "help" || config === "help") {
      console.log(USAGE);
      return 0;
    }
    // The health port is always plaintext; the gRPC port speaks whatever the server was given.
    address = probeAddress(config.host, config.health?.port ?? config.port);
    credentials = config.health ? grpc.credentials.createInsecure() : probeCredentials(options, config.tls !== null);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(`healthProbe: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  const channelOptions = options.serverName ? { "grpc.ssl_target_name_override": options.serverName } : {};
  const status = await checkHealth(address, options.service, options.timeoutMs, credentials, channelOptions);
  const what = options.service === "" ? "server" : options.service;
  console.log(`${what} at ${address}: ${status}`);
  return status === "SERVING" ? 0 : 1;
}

/** Plaintext for a plaintext server; TLS (with a client certificate if given) for a TLS one. */
function probeCredentials(options: ProbeOptions, serverUsesTls: boolean): grpc.ChannelCredentials {
  if (!serverUsesTls && !options.tlsCa) return grpc.credentials.createInsecure();
  if (!options.tlsCa) throw new ConfigError("the server uses TLS (CTM_TLS_CERT is set): give --tls-ca");
  if (Boolean(options.tlsCert) !== Boolean(options.tlsKey))
    throw new ConfigError("--tls-cert and --tls-key go together");
  const read = (flag: string, path: string | undefined) => {
    if (!path) return null;
    try {
      return readFileSync(callerPath(path));
    } catch (error) {
      throw new ConfigError(`${flag}: cannot read ${path}: ${(error as Error).message}`);
    }
  };
  return grpc.credentials.createSsl(
    read("--tls-ca", options.tlsCa),
    read("--tls-key", options.tlsKey),
    read("--tls-cert", options.tlsCert),
  );
}

// Run as a program, not when a test imports checkHealth.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) process.exitCode = await main();
