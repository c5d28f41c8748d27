/**
 * grpc.reflection.v1 from a client's side, as grpcurl uses it: requests sent on one
 * ServerReflectionInfo stream, the answers read back in order. The service definition is
 * @grpc/reflection's own proto, loaded with the options its server side uses.
 */
import { createRequire } from "node:module";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { bidiStreamingMethod, methodOf } from "../../server/src/client/grpcCalls.ts";

const SERVICE = "grpc.reflection.v1.ServerReflection";

function reflectionService(): grpc.ServiceDefinition {
  const require = createRequire(import.meta.url);
  const protoDir = join(require.resolve("@grpc/reflection/package.json"), "..", "build", "proto");
  const definition = protoLoader.loadSync("grpc/reflection/v1/reflection.proto", {
    includeDirs: [protoDir],
    keepCase: true,
  });
  const service = definition[SERVICE];
  if (!service || !("ServerReflectionInfo" in service)) throw new Error(`@grpc/reflection's proto has no ${SERVICE}`);
  return service as grpc.ServiceDefinition;
}

/** Sends each request on one ServerReflectionInfo stream and resolves with the answers, in order. */
export async function reflect<Response = Record<string, unknown>>(
  address: string,
  requests: readonly object[],
  credentials = grpc.credentials.createInsecure(),
): Promise<Response[]> {
  const client = new grpc.Client(address, credentials);
  const info = bidiStreamingMethod<object, Response>(client, methodOf(reflectionService(), "ServerReflectionInfo"));
  async function* sent() {
    yield* requests;
  }
  try {
    const responses: Response[] = [];
    for await (const response of info(sent())) responses.push(response);
    return responses;
  } finally {
    client.close();
  }
}
