/** How every proto of this server is loaded: ctm.v1, the Open Inference Protocol, health, reflection. */
import { fileURLToPath } from "node:url";
import type * as protoLoader from "@grpc/proto-loader";

export const PROTO_DIR = fileURLToPath(new URL("../../../../proto", import.meta.url));

/**
 * The options every proto is loaded with (the protocols' message shapes assume them). keepCase matters
 * beyond decoding: protobufjs renames fields in the descriptors it builds without it.
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};
