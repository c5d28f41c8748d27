/**
 * Prometheus metrics, served on their own HTTP port so that scraping never queues behind gRPC work.
 * Each server owns its registry (several servers can run in one process, as the tests do).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { EngineObserver } from "./engine/modelEngine.ts";
import { listenError } from "./listenError.ts";
import { decodeCounts } from "./runtime/decodeSlots.ts";

export class ServerMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: "ctm_requests_total",
    help: "Finished RPCs by model, method and gRPC status.",
    labelNames: ["model", "method", "status"] as const,
    registers: [this.registry],
  });
  private readonly latency = new Histogram({
    name: "ctm_request_duration_seconds",
    help: "RPC latency from receipt to the last message, by model and method.",
    labelNames: ["model", "method"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  private readonly ticksUsed = new Histogram({
    name: "ctm_ticks_used",
    help: "Ticks a request ran, by how it ended (as ctm_halts_total).",
    labelNames: ["model", "reason"] as const,
    buckets: [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 75, 100],
    registers: [this.registry],
  });
  private readonly halts = new Counter({
    name: "ctm_halts_total",
    help: "Every request admitted to a model, once, by how it ended: THRESHOLD, PATIENCE, MAX_TICKS, DEADLINE (answered), CANCELLED, FAILED (a graph run or its worker failed, or the model had no worker) or EXPIRED (its deadline passed before its first tick).",
    labelNames: ["model", "reason"] as const,
    registers: [this.registry],
  });
  private readonly tickRows = new Counter({
    name: "ctm_tick_rows_total",
    help: "Request-ticks computed (the sum of batch sizes over all tick runs).",
    labelNames: ["model"] as const,
    registers: [this.registry],
  });
  private readonly batchSize = new Histogram({
    name: "ctm_batch_size",
    help: "Rows advanced by one batched tick run.",
    labelNames: ["model"] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    registers: [this.registry],
  });
  private readonly queueDepth = new Gauge({
    name: "ctm_queue_depth",
    help: "Requests admitted but waiting for a batch slot.",
    labelNames: ["model"] as const,
    registers: [this.registry],
  });
  private readonly activeRequests = new Gauge({
    name: "ctm_active_requests",
    help: "Requests holding a batch slot (admitted to a worker, not yet finished, not parked).",
    labelNames: ["model"] as const,
    registers: [this.registry],
  });
  private readonly versionsServing = new Gauge({
    name: "ctm_model_version_serving",
    help: "1 for each model version that serves now (loaded, with a running worker); a version unloaded has no series.",
    labelNames: ["model", "version"] as const,
    registers: [this.registry],
  });
  private readonly parkedRequests = new Gauge({
    name: "ctm_parked_requests",
    help: "Streams whose client stopped taking messages: parked, costing no compute and holding no batch slot.",
    labelNames: ["model"] as const,
    registers: [this.registry],
  });
  private readonly tickRun = new Histogram({
    name: "ctm_tick_run_seconds",
    help: "Duration of one batched tick-graph run.",
    labelNames: ["model"] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
    registers: [this.registry],
  });
  private readonly encodeRun = new Histogram({
    name: "ctm_encoder_run_seconds",
    help: "Duration of one batched encoder run (new requests joining).",
    labelNames: ["model"] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1],
    registers: [this.registry],
  });
  private readonly stepTime = new Counter({
    name: "ctm_worker_step_seconds_total",
    help: "Worker wall time at tick boundaries: the graph runs plus the copies, halting checks and messages around them. Minus the tick and encoder run sums it is the server's own cost per tick.",
    labelNames: ["model"] as const,
    registers: [this.registry],
  });

  private readonly refusals = new Counter({
    name: "ctm_refusals_total",
    help: "Requests refused on arrival with RESOURCE_EXHAUSTED, by cause: queue (every batch slot and --max-queue taken) or objective (not answerable within --latency-objective-ms even with every request that gave a floor at its floor).",
    labelNames: ["model", "cause"] as const,
    registers: [this.registry],
  });
  private readonly targetLowering = new Gauge({
    name: "ctm_target_lowering",
    help: "How far below its target (in accuracy or consistency) a request that gave a floor starts thinking now, its floor permitting; 0: not lowered (--latency-objective-ms).",
    labelNames: ["model"] as const,
    registers: [this.registry],
  });
  private readonly capacity = new Gauge({
    name: "ctm_capacity_ticks_per_second",
    help: "Request-ticks per second the model's workers advance at a full batch, as the load controller last measured from their tick runs.",
    labelNames: ["model"] as const,
    registers: [this.registry],
  });
  private readonly servedTarget = new Histogram({
    name: "ctm_served_target",
    help: "The target each answered request that gave a floor was served at: its own, or the lower certified one load lowered it to.",
    labelNames: ["model", "kind"] as const,
    buckets: [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.975, 0.99, 1],
    registers: [this.registry],
  });
  private readonly lowered = new Histogram({
    name: "ctm_target_lowered_by",
    help: "Answered requests that load lowered, by how much below the target they asked for they were served (count: how many).",
    labelNames: ["model", "kind"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "ctm_" });
    // The process's decode line (runtime/decodeSlots.ts), read when scraped.
    new Counter({
      name: "ctm_image_decodes_total",
      help: "Images libvips began to decode (small plain PNGs are decoded without it), all models together.",
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(decodeCounts().started);
      },
    });
    new Gauge({
      name: "ctm_image_decodes_waiting",
      help: "Images waiting for one of the --decode-slots.",
      registers: [this.registry],
      collect() {
        this.set(decodeCounts().waiting);
      },
    });
  }

  private readonly servingVersions = new Map<string, ReadonlySet<number>>();

  /** The versions of `model` that serve now; the series of versions that no longer do go. */
  modelVersions(model: string, serving: readonly number[]): void {
    for (const version of this.servingVersions.get(model) ?? []) {
      if (!serving.includes(version)) this.versionsServing.remove({ model, version: String(version) });
    }
    for (const version of serving) this.versionsServing.set({ model, version: String(version) }, 1);
    this.servingVersions.set(model, new Set(serving));
  }

  requestFinished(model: string, method: string, status: string, seconds: number): void {
    this.requests.inc({ model, method, status });
    this.latency.observe({ model, method }, seconds);
  }

  /** The engine's hooks, feeding the metrics above. */
  readonly engine: EngineObserver = {
    step: (model, run) => {
      if (run.batchSize > 0) {
        this.tickRows.inc({ model }, run.batchSize);
        this.batchSize.observe({ model }, run.batchSize);
        this.tickRun.observe({ model }, run.tickMs / 1000);
      }
      if (run.joined > 0) this.encodeRun.observe({ model }, run.encodeMs / 1000);
      this.stepTime.inc({ model }, run.stepMs / 1000);
    },
    occupancy: (model, queued, active, parked) => {
      this.queueDepth.set({ model }, queued);
      this.activeRequests.set({ model }, active);
      this.parkedRequests.set({ model }, parked);
    },
    finished: (model, outcome, reason, ticksUsed) => {
      const why = reason ?? outcome.toUpperCase();
      this.halts.inc({ model, reason: why });
      this.ticksUsed.observe({ model, reason: why }, ticksUsed);
    },
    refused: (model, cause) => this.refusals.inc({ model, cause }),
    load: (model, state) => {
      this.targetLowering.set({ model }, state.lowering);
      if (state.ticksPerSecond > 0) this.capacity.set({ model }, state.ticksPerSecond);
    },
    served: (model, kind, requested, served) => {
      this.servedTarget.observe({ model, kind }, served);
      if (served < requested) this.lowered.observe({ model, kind }, requested - served);
    },
  };
}

/** Serves GET /metrics; resolves with the bound port. */
export async function serveMetrics(
  metrics: ServerMetrics,
  host: string,
  port: number,
): Promise<{ server: Server; port: number }> {
  const server = createServer((request, response) => {
    if (request.method !== "GET" || request.url?.split("?")[0] !== "/metrics") {
      response.writeHead(404, { "content-type": "text/plain" }).end("not found; metrics are at /metrics\n");
      return;
    }
    metrics.registry.metrics().then(
      (text) => response.writeHead(200, { "content-type": metrics.registry.contentType }).end(text),
      (error: Error) => response.writeHead(500, { "content-type": "text/plain" }).end(`${error.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error) =>
      reject(listenError("metrics", host, port, "--metrics-port", error, "--metrics-host")),
    );
    server.listen(port, host, () => resolve());
  });
  return { server, port: (server.address() as AddressInfo).port };
}
