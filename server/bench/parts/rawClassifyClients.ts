/**
 * Classify clients that send pre-encoded request bytes and take the response bytes undecoded, so
 * that a load generator spends its CPU on the calls, not on protobuf. A few connections, as a fleet
 * of callers would have; grpc-js would otherwise share one.
 */
import * as grpc from "@grpc/grpc-js";
import { type UnaryMethod, unaryMethod } from "../../../tools/harness/index.ts";

const identity = (buffer: Buffer) => buffer;
const RAW_CLASSIFY: grpc.MethodDefinition<Buffer, Buffer> = {
  path: "/ctm.v1.CtmService/Classify",
  requestStream: false,
  responseStream: false,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
};

export interface RawClassifyClient {
  classify: UnaryMethod<Buffer, Buffer>;
  close(): void;
}

export function rawClassifyClients(port: string | number, connections = 8): RawClassifyClient[] {
  return Array.from({ length: connections }, () => {
    const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      "grpc.use_local_subchannel_pool": 1,
    });
    return { classify: unaryMethod(client, RAW_CLASSIFY), close: () => client.close() };
  });
}
