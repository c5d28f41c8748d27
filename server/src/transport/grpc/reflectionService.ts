/**
 * Server reflection, describing every service the server exposes: ctm.v1.CtmService,
 * inference.GRPCInferenceService (the Open Inference Protocol), grpc.health.v1.Health and the
 * reflection services themselves (v1 and v1alpha), as servers built on grpc-go or grpc-java do, so
 * that a tool needs nothing but the address.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { CONTRACT_FILES, LOADER_OPTIONS } from "../ctmV1/ctmProtocol.ts";
import { INFERENCE_PROTO } from "../oip/oipProtocol.ts";
import { protocFileDescriptors } from "./reflectionDescriptors.ts";

const reflectionProtoDir = join(
  dirname(createRequire(import.meta.url).resolve("@grpc/reflection/package.json")),
  "build/proto/grpc/reflection",
);
const REFLECTION_FILES = ["v1", "v1alpha"].map((version) => join(reflectionProtoDir, version, "reflection.proto"));

export function addReflectionService(server: grpc.Server): void {
  const described = protoLoader.loadSync([...CONTRACT_FILES, INFERENCE_PROTO, ...REFLECTION_FILES], LOADER_OPTIONS);
  // The service reads nothing but each definition's fileDescriptorProtos, so one entry holding every
  // file is all it needs.
  const files = protocFileDescriptors(described);
  const definition = { descriptors: { format: "", type: {}, fileDescriptorProtos: files } };
  new ReflectionService(definition as unknown as protoLoader.PackageDefinition).addToServer(server);
}
