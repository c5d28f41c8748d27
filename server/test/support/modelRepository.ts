/**
 * Model folders with several versions of the shipped model, for model-control tests: each version
 * folder holds its own manifest.json (with its version number) and links to the shipped graphs, so
 * that a version costs a few KB. And a client for the Open Inference Protocol's gRPC service.
 */
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { createOipClient, type OipClient, type UnaryMethod } from "../../../tools/harness/index.ts";
import { MODEL_NAME, modelDir } from "../../../tools/harness/testServer.ts";

/**
 * A models folder holding a copy of the shipped model under `name`, allowed `maxTicks` ticks (the
 * manifest's ticks.max; the graphs do not depend on it), for tests that need requests to run long.
 */
export function longModelDir(name: string, maxTicks: number): string {
  const root = mkdtempSync(join(tmpdir(), "ctm-long-model-"));
  const dir = join(root, name, "1");
  mkdirSync(dir, { recursive: true });
  for (const file of ["manifest.json", "encoder.onnx", "tick.onnx", "calibration.json"])
    copyFileSync(join(modelDir(), file), join(dir, file));
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8"));
  manifest.name = name;
  manifest.ticks.max = maxTicks;
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
  return root;
}

/** A models folder holding `versions` of the shipped model (as `name`). */
export function versionedModelsDir(versions: number[], name = MODEL_NAME): string {
  const root = mkdtempSync(join(tmpdir(), "ctm-versions-"));
  for (const version of versions) addVersion(root, version, name);
  return root;
}

/**
 * Puts version `version` of the shipped model into `root`, whole at once: it is written into a hidden
 * folder beside it (which the server does not read) and renamed into place, so that a poll never sees
 * half of it. `brokenTick`: its tick graph is cut short, so that it fails to load.
 */
export function addVersion(root: string, version: number, name = MODEL_NAME, brokenTick = false): string {
  const staging = mkdtempSync(join(root, ".staging-"));
  for (const file of readdirSync(modelDir())) {
    if (file === "manifest.json" || (brokenTick && file === "tick.onnx")) continue;
    symlinkSync(join(modelDir(), file), join(staging, file));
  }
  if (brokenTick) {
    const tick = readFileSync(join(modelDir(), "tick.onnx"));
    writeFileSync(join(staging, "tick.onnx"), tick.subarray(0, Math.floor(tick.length / 3)));
  }
  writeManifest(staging, version, name);
  const dir = join(root, name, String(version));
  mkdirSync(join(root, name), { recursive: true });
  renameSync(staging, dir);
  return dir;
}

/** Rewrites a version's manifest.json unchanged but for its file time: a reload's cue. */
export function touchVersion(root: string, version: number, name = MODEL_NAME): void {
  writeManifest(join(root, name, String(version)), version, name, { note: `rewritten ${Date.now()}` });
}

export function removeVersion(root: string, version: number, name = MODEL_NAME): void {
  rmSync(join(root, name, String(version)), { recursive: true, force: true });
}

function writeManifest(dir: string, version: number, name: string, extra: Record<string, unknown> = {}): void {
  const manifest = JSON.parse(readFileSync(join(modelDir(), "manifest.json"), "utf8")) as Record<string, unknown>;
  manifest.name = name;
  manifest.version = version;
  // A description the manifest may carry, to change its bytes without changing the model.
  if (extra.note) manifest.description = `${String(manifest.description ?? "")} (${extra.note})`;
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
}

/** A unary method of inference.GRPCInferenceService, by name. */
export type OipUnaryName = Exclude<keyof OipClient, "grpc" | "close" | "ModelStreamInfer">;

/** inference.GRPCInferenceService (the shared client, tools/harness) called by name: `call("RepositoryIndex", {...})`. */
export class InferenceTestClient {
  readonly oip: OipClient;

  constructor(address: string) {
    this.oip = createOipClient(address);
  }

  call<T = Record<string, unknown>>(method: OipUnaryName, request: object, metadata = new grpc.Metadata()): Promise<T> {
    const unary = this.oip[method] as UnaryMethod<object, unknown>;
    return unary(request, { metadata }) as Promise<T>;
  }

  close(): void {
    this.oip.close();
  }
}

/** A v2 ModelInferRequest for the golden input, as proto-loader takes it. */
export function inferRequest(
  input: number[],
  options: { version?: string; parameters?: Record<string, number>; rows?: number } = {},
): object {
  const rows = options.rows ?? 1;
  const parameters = Object.fromEntries(
    Object.entries(options.parameters ?? {}).map(([k, v]) => [k, { double_param: v }]),
  );
  return {
    model_name: MODEL_NAME,
    model_version: options.version ?? "",
    parameters,
    inputs: [
      {
        name: "input",
        datatype: "FP32",
        shape: [rows, 1, 28, 28],
        contents: { fp32_contents: Array.from({ length: rows }, () => input).flat() },
      },
    ],
  };
}
