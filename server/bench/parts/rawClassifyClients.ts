/**
 * Classify clients that send pre-encoded request bytes and take the response bytes undecoded, so
 * that a load generator spends its CPU on the calls, not on protobuf. A few connections, as a fleet
 * of callers would have; grpc-js would otherwise share one.
 */
import * as grpc from "@grpc/grpc-js";

const identity = (buffer: Buffer) => buffer;
const Client = grpc.makeGenericClientConstructor(
  {
    Classify: {
      path: "/ctm.v1.CtmService/Classify",
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  "CtmService",
);

export function rawClassifyClients(port: string | number, connections = 8): grpc.Client[] {
  return Array.from(
    { length: connections },
    () => new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }),
  );
}
