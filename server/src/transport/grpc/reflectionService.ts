/**
 * Server reflection, describing every service the server exposes: the protocols' (ctm.v1.CtmService,
 * inference.GRPCInferenceService, grpc.health.v1.Health: their proto files are given by server.ts)
 * and the reflection services themselves (v1 and v1alpha), as servers built on grpc-go or grpc-java
 * do, so that a tool needs nothing but the address.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { LOADER_OPTIONS } from "./protoLoading.ts";
import { protocFileDescriptors } from "./reflectionDescriptors.ts";

const reflectionProtoDir = join(
  dirname(createRequire(import.meta.url).resolve("@grpc/reflection/package.json")),
  "build/proto/grpc/reflection",
);
const REFLECTION_FILES = ["v1", "v1alpha"].map((version) => join(reflectionProtoDir, version, "reflection.proto"));

/** Adds reflection over `protoFiles` (paths under PROTO_DIR, or absolute) and its own services. */
export function addReflectionService(server: grpc.Server, protoFiles: readonly string[]): void {
  const described = protoLoader.loadSync([...protoFiles, ...REFLECTION_FILES], LOADER_OPTIONS);
  // The service reads nothing but each definition's fileDescriptorProtos, so one entry holding every
  // file is all it needs.
  const files = protocFileDescriptors(described);
  const definition = { descriptors: { format: "", type: {}, fileDescriptorProtos: files } };
  new ReflectionService(definition as unknown as protoLoader.PackageDefinition).addToServer(server);
}
