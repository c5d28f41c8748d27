/**
 * A ctm.v1 CtmService client with typed promise and async-iterable methods (grpcCalls.ts): the one
 * client that the CLI, the benchmarks, the load generator and the tests share (through tools/harness).
 * It is built from the server's own protocol module, so both ends read the same proto and options.
 */
import * as grpc from "@grpc/grpc-js";
import {
  type ClassifyRequestMessage,
  type ClassifyResponseMessage,
  type ListModelsResponseMessage,
  loadProtocol,
  type ModelInfoMessage,
  type TickUpdateMessage,
} from "../transport/ctmV1/ctmProtocol.ts";
import {
  methodOf,
  type ServerStreamingMethod,
  type ServiceClient,
  serverStreamingMethod,
  type UnaryMethod,
  unaryMethod,
} from "./grpcCalls.ts";

export interface CtmClient {
  Classify: UnaryMethod<ClassifyRequestMessage, ClassifyResponseMessage>;
  ClassifyStream: ServerStreamingMethod<ClassifyRequestMessage, TickUpdateMessage>;
  ListModels: UnaryMethod<Record<string, never>, ListModelsResponseMessage>;
  GetModel: UnaryMethod<{ name: string; version?: number }, ModelInfoMessage>;
  LoadModel: UnaryMethod<{ name: string; version_policy?: string }, Record<string, unknown>>;
  UnloadModel: UnaryMethod<{ name: string; version?: number }, Record<string, unknown>>;
  ListRepository: UnaryMethod<{ ready_only?: boolean }, Record<string, unknown>>;
  GetModelStatistics: UnaryMethod<{ name?: string; version?: number }, Record<string, unknown>>;
  /** The grpc-js client underneath, for what the typed methods do not cover (its channel, raw bytes). */
  readonly grpc: ServiceClient;
  close(): void;
}

export function createCtmClient(
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  channelOptions: grpc.ChannelOptions = {},
): CtmClient {
  const { CtmClient: Constructor } = loadProtocol();
  const client = new Constructor(address, credentials, channelOptions);
  const service = Constructor.service;
  const unary = <Req, Res>(name: string) => unaryMethod<Req, Res>(client, methodOf(service, name));
  return {
    Classify: unary("Classify"),
    ClassifyStream: serverStreamingMethod(client, methodOf(service, "ClassifyStream")),
    ListModels: unary("ListModels"),
    GetModel: unary("GetModel"),
    LoadModel: unary("LoadModel"),
    UnloadModel: unary("UnloadModel"),
    ListRepository: unary("ListRepository"),
    GetModelStatistics: unary("GetModelStatistics"),
    grpc: client,
    close: () => client.close(),
  };
}
