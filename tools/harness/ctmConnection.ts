/**
 * A load generator's side of the wire: CtmService clients (ctmClient.ts) over one or more HTTP/2
 * connections, with TLS, mutual TLS and a bearer token when asked, taken in turn call by call.
 */
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { describeConnectionFailure } from "../../server/src/cli/connectionFailure.ts";
import { type CtmClient, createCtmClient } from "../../server/src/client/ctmClient.ts";
import type { CallOptions } from "../../server/src/client/grpcCalls.ts";
import type {
  ClassifyRequestMessage,
  ClassifyResponseMessage,
  ModelInfoMessage,
  TickUpdateMessage,
} from "../../server/src/transport/ctmV1/ctmProtocol.ts";

/** PEM files for TLS: a CA to trust, and a client certificate and key for mutual TLS. */
export interface TlsOptions {
  ca?: string;
  cert?: string;
  key?: string;
  serverName?: string;
}

export interface ConnectionOptions {
  address: string;
  tls: TlsOptions | null;
  token: string | undefined;
  connections: number;
}

function readPem(flag: string, file: string | undefined): Buffer | null {
  if (file === undefined) return null;
  try {
    return readFileSync(file);
  } catch (error) {
    throw new Error(`${flag} ${file}: ${(error as Error).message}`);
  }
}

export function channelCredentials(tls: TlsOptions | null): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    readPem("--tls-ca", tls.ca),
    readPem("--tls-key", tls.key),
    readPem("--tls-cert", tls.cert),
  );
}

export class CtmConnection {
  private next = 0;

  private constructor(
    private readonly clients: CtmClient[],
    private readonly token: string | undefined,
    private readonly options: ConnectionOptions,
  ) {}

  static open(options: ConnectionOptions): CtmConnection {
    const credentials = channelCredentials(options.tls);
    const channelOptions: grpc.ChannelOptions = {
      // Without a local pool, clients with equal settings share one subchannel, i.e. one connection.
      "grpc.use_local_subchannel_pool": 1,
    };
    if (options.tls?.serverName) channelOptions["grpc.ssl_target_name_override"] = options.tls.serverName;
    const clients = Array.from({ length: options.connections }, () =>
      createCtmClient(options.address, credentials, channelOptions),
    );
    return new CtmConnection(clients, options.token, options);
  }

  /** Per-call options. The token rides on every call, so it works over plaintext too (e.g. behind a TLS proxy). */
  private withToken(options: CallOptions): CallOptions {
    const metadata = new grpc.Metadata();
    if (this.token !== undefined) metadata.set("authorization", `Bearer ${this.token}`);
    return { ...options, metadata };
  }

  /** Round-robin over the connections. */
  private client(): CtmClient {
    const client = this.clients[this.next++ % this.clients.length];
    if (!client) throw new Error("CtmConnection has no clients. This is a bug.");
    return client;
  }

  classify(request: ClassifyRequestMessage, options: CallOptions): Promise<ClassifyResponseMessage> {
    return this.client().Classify(request, this.withToken(options));
  }

  classifyStream(request: ClassifyRequestMessage, options: CallOptions): AsyncIterable<TickUpdateMessage> {
    return this.client().ClassifyStream(request, this.withToken(options));
  }

  /**
   * `wanted`, or the only model the server has. The first call of a run, so a failure to connect is
   * explained here: the error keeps its gRPC code, and its details say what to check.
   */
  async pickModel(wanted: string | undefined, deadline: Date): Promise<ModelInfoMessage> {
    try {
      return await this.askModel(wanted, deadline);
    } catch (error) {
      const unreachable = describeConnectionFailure(error as grpc.ServiceError, this.options.address, {
        address: "--address",
        tls: "--tls-ca",
        usingTls: this.options.tls !== null,
      });
      if (unreachable) Object.assign(error as grpc.ServiceError, { details: unreachable });
      throw error;
    }
  }

  private async askModel(wanted: string | undefined, deadline: Date): Promise<ModelInfoMessage> {
    if (wanted) return this.client().GetModel({ name: wanted }, this.withToken({ deadline }));
    const { models } = await this.client().ListModels({}, this.withToken({ deadline }));
    const [only] = models;
    if (models.length !== 1 || !only) {
      throw new Error(
        `the server has ${models.length} models (${models.map((m) => m.name).join(", ")}); choose one with --model`,
      );
    }
    return only;
  }

  close(): void {
    for (const client of this.clients) client.close();
  }
}
