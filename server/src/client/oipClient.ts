/**
 * An Open Inference Protocol (inference.GRPCInferenceService) client with typed promise and
 * async-iterable methods (grpcCalls.ts), built from the server's own protocol module.
 */
import * as grpc from "@grpc/grpc-js";
import {
  loadInferenceProtocol,
  type ModelInferRequestMessage,
  type ModelInferResponseMessage,
  type ModelMetadataResponseMessage,
  type ModelStreamInferResponseMessage,
} from "../transport/oip/oipProtocol.ts";
import {
  type BidiStreamingMethod,
  bidiStreamingMethod,
  methodOf,
  type ServiceClient,
  type UnaryMethod,
  unaryMethod,
} from "./grpcCalls.ts";

type Message = Record<string, unknown>;

export interface OipClient {
  ServerLive: UnaryMethod<Message, { live: boolean }>;
  ServerReady: UnaryMethod<Message, { ready: boolean }>;
  ModelReady: UnaryMethod<{ name: string; version?: string }, { ready: boolean }>;
  ServerMetadata: UnaryMethod<Message, { name: string; version: string; extensions: string[] }>;
  ModelMetadata: UnaryMethod<{ name: string; version?: string }, ModelMetadataResponseMessage>;
  ModelInfer: UnaryMethod<ModelInferRequestMessage, ModelInferResponseMessage>;
  ModelStreamInfer: BidiStreamingMethod<ModelInferRequestMessage, ModelStreamInferResponseMessage>;
  ModelConfig: UnaryMethod<{ name: string; version?: string }, Message>;
  ModelStatistics: UnaryMethod<{ name?: string; version?: string }, Message>;
  RepositoryIndex: UnaryMethod<Message, Message>;
  RepositoryModelLoad: UnaryMethod<Message, Message>;
  RepositoryModelUnload: UnaryMethod<Message, Message>;
  /** The grpc-js client underneath. */
  readonly grpc: ServiceClient;
  close(): void;
}

export function createOipClient(
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  channelOptions: grpc.ChannelOptions = {},
): OipClient {
  const { InferenceClient } = loadInferenceProtocol();
  const client = new InferenceClient(address, credentials, channelOptions);
  const service = InferenceClient.service;
  const unary = <Req, Res>(name: string) => unaryMethod<Req, Res>(client, methodOf(service, name));
  return {
    ServerLive: unary("ServerLive"),
    ServerReady: unary("ServerReady"),
    ModelReady: unary("ModelReady"),
    ServerMetadata: unary("ServerMetadata"),
    ModelMetadata: unary("ModelMetadata"),
    ModelInfer: unary("ModelInfer"),
    ModelStreamInfer: bidiStreamingMethod(client, methodOf(service, "ModelStreamInfer")),
    ModelConfig: unary("ModelConfig"),
    ModelStatistics: unary("ModelStatistics"),
    RepositoryIndex: unary("RepositoryIndex"),
    RepositoryModelLoad: unary("RepositoryModelLoad"),
    RepositoryModelUnload: unary("RepositoryModelUnload"),
    grpc: client,
    close: () => client.close(),
  };
}
