/**
 * A grpc.health.v1 Health client with typed promise and async-iterable methods (grpcCalls.ts), over
 * grpc-health-check's own service definition.
 */
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import {
  methodOf,
  type ServerStreamingMethod,
  type ServiceClient,
  serverStreamingMethod,
  type UnaryMethod,
  unaryMethod,
} from "./grpcCalls.ts";

export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

export interface HealthClient {
  Check: UnaryMethod<{ service: string }, { status: ServingStatus }>;
  Watch: ServerStreamingMethod<{ service: string }, { status: ServingStatus }>;
  /** The grpc-js client underneath. */
  readonly grpc: ServiceClient;
  close(): void;
}

const service = healthService as grpc.ServiceDefinition;

export function createHealthClient(
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  channelOptions: grpc.ChannelOptions = {},
): HealthClient {
  const client = new (grpc.makeClientConstructor(service, "Health"))(address, credentials, channelOptions);
  return {
    Check: unaryMethod(client, methodOf(service, "Check")),
    Watch: serverStreamingMethod(client, methodOf(service, "Watch")),
    grpc: client,
    close: () => client.close(),
  };
}
