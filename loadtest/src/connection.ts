/**
 * The load generator's side of the wire: CtmService clients over one or more HTTP/2 connections,
 * with TLS, mutual TLS and a bearer token when asked. The service itself is loaded by the server's
 * own protocol module, so both ends read the same proto with the same options.
 */
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import { describeConnectionFailure } from "../../server/src/cli/connectionFailure.ts";
import {
  type ClassifyRequestMessage,
  type ClassifyResponseMessage,
  type ListModelsResponseMessage,
  loadProtocol,
  type ModelInfoMessage,
  type TickUpdateMessage,
} from "../../server/src/transport/ctmV1/ctmProtocol.ts";
import type { TlsOptions } from "./options.ts";

export interface ConnectionOptions {
  address: string;
  tls: TlsOptions | null;
  token: string | undefined;
  connections: number;
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

interface CtmClient extends grpc.Client {
  Classify: UnaryMethod<ClassifyRequestMessage, ClassifyResponseMessage>;
  ClassifyStream(
    request: ClassifyRequestMessage,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
  ): grpc.ClientReadableStream<TickUpdateMessage>;
  ListModels: UnaryMethod<object, ListModelsResponseMessage>;
  GetModel: UnaryMethod<{ name: string; version?: number }, ModelInfoMessage>;
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
    const { CtmClient } = loadProtocol();
    const credentials = channelCredentials(options.tls);
    const channelOptions: grpc.ChannelOptions = {
      // Without a local pool, clients with equal settings share one subchannel, i.e. one connection.
      "grpc.use_local_subchannel_pool": 1,
    };
    if (options.tls?.serverName) channelOptions["grpc.ssl_target_name_override"] = options.tls.serverName;
    const clients = Array.from(
      { length: options.connections },
      () => new CtmClient(options.address, credentials, channelOptions) as unknown as CtmClient,
    );
    return new CtmConnection(clients, options.token, options);
  }

  /** Per-call metadata. The token rides on every call, so it works over plaintext too (e.g. behind a TLS proxy). */
  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.token !== undefined) metadata.set("authorization", `Bearer ${this.token}`);
    return metadata;
  }

  /** Round-robin over the connections. */
  private client(): CtmClient {
    const client = this.clients[this.next++ % this.clients.length];
    if (!client) throw new Error("CtmConnection has no clients. This is a bug.");
    return client;
  }

  private unary<Req, Res>(
    method: (client: CtmClient) => UnaryMethod<Req, Res>,
    request: Req,
    options: grpc.CallOptions,
    onCall?: (call: grpc.ClientUnaryCall) => void,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      const client = this.client();
      const call = method(client).call(client, request, this.metadata(), options, (error, response) =>
        error ? reject(error) : resolve(response),
      );
      onCall?.(call);
    });
  }

  classify(
    request: ClassifyRequestMessage,
    options: grpc.CallOptions,
    onCall?: (call: grpc.ClientUnaryCall) => void,
  ): Promise<ClassifyResponseMessage> {
    return this.unary((c) => c.Classify, request, options, onCall);
  }

  classifyStream(
    request: ClassifyRequestMessage,
    options: grpc.CallOptions,
  ): grpc.ClientReadableStream<TickUpdateMessage> {
    return this.client().ClassifyStream(request, this.metadata(), options);
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
    if (wanted) return this.unary((c) => c.GetModel, { name: wanted }, { deadline });
    const { models } = await this.unary((c) => c.ListModels, {}, { deadline });
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
