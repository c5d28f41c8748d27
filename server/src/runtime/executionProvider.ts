/**
 * Opens a model's two onnxruntime sessions on the execution provider the operator chose.
 *
 * onnxruntime-node throws when a provider's binaries are missing rather than falling back by itself
 * (the CUDA provider ships separately from the npm package, see .npmrc), so `auto` catches that and
 * retries on the CPU, keeping the reason for the log. It first looks for the provider's libraries
 * itself: asked for a provider it cannot load, onnxruntime also prints a red ERROR of its own on
 * stderr, which on a machine without CUDA (the common case) would precede every start's one warning.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import * as ort from "onnxruntime-node";
import type { ProviderChoice } from "./providerChoice.ts";

export interface SessionSettings {
  provider: ProviderChoice;
  /** Intra-op threads of each session. */
  threads: number;
  /**
   * Let idle intra-op threads spin instead of sleeping (onnxruntime's session.intra_op.allow_spinning).
   * Off unless set: measured off (docs/benchmarks.md, "Threads and spinning").
   */
  spinning?: boolean;
}

export interface OpenedSessions {
  encoder: ort.InferenceSession;
  tick: ort.InferenceSession;
  provider: "cpu" | "cuda";
  /** Set when `auto` fell back to the CPU: why CUDA could not be used. */
  fallbackReason?: string;
}

export async function openSessions(
  encoderPath: string,
  tickPath: string,
  settings: SessionSettings,
): Promise<OpenedSessions> {
  if (settings.provider === "cpu") return { ...(await open(encoderPath, tickPath, "cpu", settings)), provider: "cpu" };
  try {
    const missing = missingCudaProvider();
    if (missing) throw new Error(missing);
    return { ...(await open(encoderPath, tickPath, "cuda", settings)), provider: "cuda" };
  } catch (error) {
    const reason = firstLine(error);
    if (settings.provider === "cuda")
      throw new Error(`provider cuda was requested but onnxruntime could not use it: ${reason}`);
    return { ...(await open(encoderPath, tickPath, "cpu", settings)), provider: "cpu", fallbackReason: reason };
  }
}

/**
 * Why onnxruntime-node cannot have the CUDA provider here, without asking onnxruntime: its install
 * script (docs/deploy.md, GPU) puts the provider libraries beside the binding, which is where
 * onnxruntime loads them from. undefined when they are there; CUDA itself may still fail to load.
 */
export function missingCudaProvider(): string | undefined {
  const binding = join(
    dirname(createRequire(import.meta.url).resolve("onnxruntime-node")),
    "../bin/napi-v6",
    process.platform,
    process.arch,
  );
  const libraries: Partial<Record<NodeJS.Platform, string[]>> = {
    linux: ["libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so"],
    win32: ["onnxruntime_providers_shared.dll", "onnxruntime_providers_cuda.dll"],
  };
  const wanted = libraries[process.platform];
  if (!wanted) return `onnxruntime-node has no CUDA provider for ${process.platform}`;
  const missing = wanted.filter((library) => !existsSync(join(binding, library)));
  if (missing.length === 0) return undefined;
  return `the CUDA provider is not installed (no ${missing.join(" or ")} in ${binding}; docs/deploy.md, GPU, says how to add it)`;
}

async function open(encoderPath: string, tickPath: string, provider: "cpu" | "cuda", settings: SessionSettings) {
  const options: ort.InferenceSession.SessionOptions = {
    // CPU stays listed after CUDA so that ops CUDA lacks still run.
    executionProviders: provider === "cuda" ? ["cuda", "cpu"] : ["cpu"],
    intraOpNumThreads: settings.threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    // Spinning intra-op threads keep a core busy between runs; on a small machine that core is the one
    // the gRPC event loop needs, and a tick run is too short for the wake-up latency to matter.
    extra: { session: { intra_op: { allow_spinning: settings.spinning ? "1" : "0" } } },
  };
  const encoder = await create(encoderPath, options);
  try {
    return { encoder, tick: await create(tickPath, options) };
  } catch (error) {
    await encoder.release();
    throw error;
  }
}

async function create(path: string, options: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(path, options);
  } catch (error) {
    // onnxruntime says "Load model from <path> failed:<reason>" for a file it cannot parse; put the path
    // first and say what it means. Other errors (a provider that cannot load) pass unchanged.
    const message = error instanceof Error ? error.message : String(error);
    const unreadable = /^Load model from .* failed:\s*(.*)$/s.exec(message);
    if (!unreadable) throw error;
    throw new Error(`${path} is not a valid ONNX model: ${(unreadable[1] ?? "").trim()}`);
  }
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0] ?? message;
}
