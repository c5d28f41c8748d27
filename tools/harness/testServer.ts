/**
 * A real server on 127.0.0.1:0 serving the shipped model, and a real gRPC client for it. No mocks:
 * every test goes through the same transport, engine, workers and onnxruntime as production.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { parseConfig, type ServerConfig } from "../../server/src/config.ts";
import { createLogger } from "../../server/src/logger.ts";
import { type RunningServer, type StartOptions, startServer } from "../../server/src/server.ts";
import type {
  ClassifyRequestMessage,
  ClassifyResponseMessage,
  ListModelsResponseMessage,
  ModelInfoMessage,
  TickUpdateMessage,
} from "../../server/src/transport/ctmV1/ctmProtocol.ts";
import { type CtmClient, createCtmClient, parsePrometheusText, sumOf } from "./index.ts";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const MODEL_NAME = "mnist-ctm";

/** The shipped model's folder (its highest version). */
export function modelDir(): string {
  const root = join(REPO, "models", MODEL_NAME);
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+$/.test(v))
        .map(Number)
    : [];
  if (versions.length === 0) throw new Error(`${root}/<version> is missing: export the model first (npm run export)`);
  return join(root, String(Math.max(...versions)));
}

export function readModelJson<T>(file: string): T {
  return JSON.parse(readFileSync(join(modelDir(), file), "utf8")) as T;
}

export interface GoldenCase {
  input_shape: number[];
  input: number[];
  label: number;
  logits: number[][];
  certainty: number[];
  probabilities: number[][];
  /** Per tick: the halting head's output, for a model with one. */
  halt?: number[];
  sample?: string;
}

export interface Sample {
  file: string;
  label: number;
  png: Buffer;
}

export function samples(): Sample[] {
  const list = readModelJson<{ file: string; label: number }[]>("samples/labels.json");
  return list.map(({ file, label }) => ({ file, label, png: readFileSync(join(modelDir(), "samples", file)) }));
}

/** A models folder holding only the shipped model, so that other folders under models/ cannot interfere. */
export function isolatedModelsDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "ctm-models-"));
  symlinkSync(join(REPO, "models", MODEL_NAME), join(dir, MODEL_NAME));
  return dir;
}

export function testConfig(overrides: Partial<ServerConfig> = {}): ServerConfig {
  const defaults = parseConfig([], {}) as ServerConfig;
  return {
    host: "127.0.0.1",
    port: 0,
    modelsDir: isolatedModelsDir(),
    provider: "cpu",
    // Two cores and a training run in the background: one intra-op thread keeps runs predictable.
    threads: 1,
    workers: 1,
    workerNice: 5,
    maxBatch: 64,
    maxQueue: 256,
    latencyObjectiveMs: defaults.latencyObjectiveMs,
    decodeSlots: defaults.decodeSlots,
    streamWriteIdleMs: defaults.streamWriteIdleMs,
    receiveTimeoutMs: defaults.receiveTimeoutMs,
    metrics: { host: "127.0.0.1", port: 0 },
    http: null,
    health: null,
    graceMs: 2000,
    maxConnectionAgeMs: 0,
    keepaliveMs: defaults.keepaliveMs,
    keepaliveTimeoutMs: defaults.keepaliveTimeoutMs,
    maxConnectionIdleMs: defaults.maxConnectionIdleMs,
    logLevel: "info",
    tls: null,
    auth: { tokens: [], tokensFile: null },
    limits: { ...defaults.limits },
    onModelError: "exit",
    modelControl: defaults.modelControl,
    ...overrides,
  };
}

export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface TestServer {
  server: RunningServer;
  client: CtmTestClient;
  address: string;
  logs: LogLine[];
  metrics(): Promise<string>;
  close(): Promise<void>;
}

export async function startTestServer(
  overrides: Partial<ServerConfig> = {},
  options: StartOptions = {},
): Promise<TestServer> {
  const logs: LogLine[] = [];
  const logger = createLogger("info", { write: (line: string) => logs.push(JSON.parse(line) as LogLine) });
  const server = await startServer(testConfig(overrides), { ...options, logger });
  const address = `127.0.0.1:${server.port}`;
  const client = new CtmTestClient(address);
  return {
    server,
    client,
    address,
    logs,
    metrics: async () => {
      const response = await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`);
      return response.text();
    },
    close: async () => {
      client.close();
      await server.shutdown(0);
    },
  };
}

/**
 * The shared CtmService client (tools/harness) with the tests' defaults, plus the grpc-js stream and
 * client underneath for tests that work the wire itself (cancel mid-stream, read status events, send
 * raw bytes, watch the channel).
 */
export class CtmTestClient {
  readonly raw: grpc.Client & Record<string, unknown>;
  readonly ctm: CtmClient;

  constructor(address: string, credentials = grpc.credentials.createInsecure()) {
    this.ctm = createCtmClient(address, credentials);
    this.raw = this.ctm.grpc;
  }

  classify(request: ClassifyRequestMessage, options: grpc.CallOptions = {}): Promise<ClassifyResponseMessage> {
    return this.ctm.Classify(request, options);
  }

  stream(
    request: ClassifyRequestMessage,
    options: grpc.CallOptions = {},
  ): grpc.ClientReadableStream<TickUpdateMessage> {
    const method = this.raw.ClassifyStream as (
      r: ClassifyRequestMessage,
      o: grpc.CallOptions,
    ) => grpc.ClientReadableStream<TickUpdateMessage>;
    return method.call(this.raw, request, options);
  }

  /** Every message of a stream; rejects with the call's error status. */
  async collect(request: ClassifyRequestMessage, options: grpc.CallOptions = {}): Promise<TickUpdateMessage[]> {
    const messages: TickUpdateMessage[] = [];
    for await (const message of this.ctm.ClassifyStream(request, options)) messages.push(message);
    return messages;
  }

  getModel(name: string, version = 0): Promise<ModelInfoMessage> {
    return this.ctm.GetModel({ name, version });
  }

  listModels(): Promise<ListModelsResponseMessage> {
    return this.ctm.ListModels({});
  }

  close(): void {
    this.ctm.close();
  }
}

/** Resolves with the error of a call that must fail; rejects if it succeeds. */
export async function failure(call: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await call;
  } catch (error) {
    return error as grpc.ServiceError;
  }
  throw new Error("the call succeeded, but it should have failed");
}

/** A request for the golden case's raw tensor. */
export function tensorRequest(
  golden: GoldenCase,
  policy: ClassifyRequestMessage["halt_policy"] = {},
): ClassifyRequestMessage {
  return { model: MODEL_NAME, tensor: { shape: golden.input_shape, values: golden.input }, halt_policy: policy };
}

/** Sum of a Prometheus sample's values over every series whose labels include `labels`. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  return sumOf(parsePrometheusText(text), name, labels);
}
