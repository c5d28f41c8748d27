/**
 * Wires one server together: gRPC (CtmService, the Open Inference Protocol's GRPCInferenceService,
 * grpc.health.v1, reflection), the models, metrics.
 *
 * Start-up binds first and loads the models second, so that health answers NOT_SERVING while they
 * load. Shutdown reverses it: health turns NOT_SERVING, the engines stop admitting and get the grace
 * period to finish what is in flight, and only then does the gRPC server close.
 */
import * as grpc from "@grpc/grpc-js";
import type { ServerConfig } from "./config.ts";
import { ModelControl } from "./engine/modelControl.ts";
import { ModelRegistry, nameOf } from "./engine/modelRegistry.ts";
import { listenError } from "./listenError.ts";
import { createLogger, type Logger } from "./logger.ts";
import { ServerMetrics, serveMetrics } from "./metrics.ts";
import { listRepository, loadModelFolder } from "./model/modelFolder.ts";
import { setDecodeSlots } from "./runtime/decodeSlots.ts";
import { defaultImagePixels } from "./runtime/imagePixelLimit.ts";
import { ctmAccess } from "./transport/ctmV1/ctmAccess.ts";
import { CONTRACT_FILES, ctmServiceDefinition } from "./transport/ctmV1/ctmProtocol.ts";
import { createCtmRepository } from "./transport/ctmV1/ctmRepository.ts";
import { createCtmService } from "./transport/ctmV1/ctmService.ts";
import { authInterceptor, TokenTable } from "./transport/grpc/authentication.ts";
import { connectionOptions } from "./transport/grpc/connectionUpkeep.ts";
import { InflightBytes, inflightInterceptor } from "./transport/grpc/inflightBytes.ts";
import { checkInputFits } from "./transport/grpc/inputFit.ts";
import { addReflectionService } from "./transport/grpc/reflectionService.ts";
import { arrivalInterceptor } from "./transport/grpc/requestArrival.ts";
import { deriveRequestSizeLimits, messageTooLarge, type ServedInput } from "./transport/grpc/requestSize.ts";
import { serverCredentials } from "./transport/grpc/serverCredentials.ts";
import { CTM_SERVICE, INFERENCE_SERVICE } from "./transport/grpc/serviceNames.ts";
import { type HealthPort, serveHealthPort } from "./transport/health/healthPort.ts";
import { modelHealthService } from "./transport/health/modelHealth.ts";
import { followModelSet } from "./transport/health/modelSetHealth.ts";
import { ServingHealth } from "./transport/health/servingHealth.ts";
import { type PlaygroundServer, servePlayground } from "./transport/http/playgroundHttp.ts";
import { createInferenceService } from "./transport/oip/grpcService.ts";
import { oipAccess } from "./transport/oip/oipAccess.ts";
import { INFERENCE_PROTO, inferenceServiceDefinition } from "./transport/oip/oipProtocol.ts";
import { createRepositoryService } from "./transport/oip/repositoryService.ts";
import { createRestApi } from "./transport/oip/restApi.ts";

export interface StartOptions {
  /** Defaults to pino on stdout at config.logLevel. */
  logger?: Logger;
  /** Called once the gRPC port is bound, before models load; start-up waits for it. */
  onListening?: (port: number) => void | Promise<void>;
}

export interface RunningServer {
  port: number;
  /** null when metrics are disabled. */
  metricsPort: number | null;
  /** The playground's HTTP port; null when --http-port is 0. */
  httpPort: number | null;
  /** The health port (healthPort.ts); null when --health-port is 0. */
  healthPort: number | null;
  registry: ModelRegistry;
  /** Model control: what serves, loading and unloading while the server runs. */
  control: ModelControl;
  /** grpc.health.v1's record of what is serving (the health port mirrors it). */
  health: ServingHealth;
  /** Drains (up to `graceMs`, default config.graceMs) and stops. Safe to call more than once. */
  shutdown(graceMs?: number): Promise<void>;
}

/** The methods whose requests carry a model's input; every other request is small. */
const CARRIES_INPUT = new Set([
  `/${CTM_SERVICE}/Classify`,
  `/${CTM_SERVICE}/ClassifyStream`,
  `/${INFERENCE_SERVICE}/ModelInfer`,
  `/${INFERENCE_SERVICE}/ModelStreamInfer`,
]);
/** The largest request of any other method: names and versions, a few hundred bytes in practice. */
const SMALL_REQUEST_BYTES = 64 * 1024;

/** Health watchers hold streams open forever; after the drain they get this long, then are cut. */
const CLOSE_TIMEOUT_MS = 1000;

export async function startServer(config: ServerConfig, options: StartOptions = {}): Promise<RunningServer> {
  const log = options.logger ?? createLogger(config.logLevel);
  const registry = new ModelRegistry();
  const metrics = new ServerMetrics();
  const health = new ServingHealth({ "": "NOT_SERVING", [CTM_SERVICE]: "NOT_SERVING" });
  // Secrets and certificates are read before anything binds: a bad file fails the start, naming it.
  const credentials = serverCredentials(config.tls);
  const tokens = TokenTable.load(config.auth);
  // The message limits follow from the models' manifests, read (not loaded) before the port binds.
  const inputs = servedInputs(config.modelsDir);
  const sizes = deriveRequestSizeLimits(config.limits, inputs);
  const imagePixels =
    config.limits.maxImagePixels ||
    defaultImagePixels(inputs.filter((input) => input.kind === "image").map((input) => pixelsOf(input.shape)));
  const inflight = new InflightBytes(config.limits.maxInflightBytes);
  const engineOptions = {
    workers: config.workers,
    workerNice: config.workerNice,
    maxBatch: config.maxBatch,
    maxQueue: config.maxQueue,
    latencyObjectiveMs: config.latencyObjectiveMs,
    maxTicks: config.limits.maxTicks,
    image: {
      maxPixels: imagePixels,
      maxSide: config.limits.maxImageSide,
      formats: config.limits.imageFormats,
    },
    session: { provider: config.provider, threads: config.threads },
  };
  const control = new ModelControl(
    registry,
    {
      modelsDir: config.modelsDir,
      mode: config.modelControl.mode,
      pollMs: config.modelControl.pollMs,
      startupModels: config.modelControl.loadModels,
      policies: config.modelControl.versionPolicies,
      onModelError: config.onModelError,
      engine: engineOptions,
      graceMs: config.graceMs,
      check: (definition) => checkInputFits(definition.manifest.name, definition.manifest.input, sizes),
    },
    log,
    metrics.engine,
  );
  setDecodeSlots(config.decodeSlots);
  const server = new grpc.Server({
    "grpc.max_receive_message_length": sizes.maxMessageBytes,
    ...connectionOptions({ ...config, maxConcurrentStreams: config.limits.maxConcurrentStreams }),
    // Bytes are counted as they arrive first, before the token check: a message still arriving costs
    // memory whoever sends it. The token check comes next, so that only authenticated calls' decoded
    // messages count against the in-flight bound.
    interceptors: [
      arrivalInterceptor({
        inflight,
        receiveTimeoutMs: config.receiveTimeoutMs,
        maxMessageBytes: sizes.maxMessageBytes,
        limitOf: (path) => (CARRIES_INPUT.has(path) ? sizes.maxMessageBytes : SMALL_REQUEST_BYTES),
        tooLarge: (bytes, limit) =>
          limit < sizes.maxMessageBytes
            ? `the request message is ${bytes} bytes, beyond the ${limit} a request that carries no input may have`
            : messageTooLarge(bytes, sizes),
        onMissingStream: () =>
          log.error(
            "grpc-js no longer shows a call's HTTP/2 stream where callStream.ts looks: request bytes are not counted as they arrive. This is a bug.",
          ),
      }),
      ...(tokens ? [authInterceptor(tokens, [ctmAccess, oipAccess])] : []),
      inflightInterceptor(inflight),
    ],
  });
  server.addService(ctmServiceDefinition(sizes), {
    ...createCtmService(registry, metrics, log, { streamWriteIdleMs: config.streamWriteIdleMs }),
    ...createCtmRepository(control, registry, metrics, log),
  });
  server.addService(inferenceServiceDefinition(sizes, config.maxBatch), {
    ...createInferenceService(registry, health, metrics, log, {
      maxBatch: config.maxBatch,
      streamWriteIdleMs: config.streamWriteIdleMs,
    }),
    ...createRepositoryService(control, registry, metrics, log),
  });
  health.addToServer(server);
  addReflectionService(server, [...CONTRACT_FILES, INFERENCE_PROTO]);

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${config.host}:${config.port}`, credentials, (error, bound) =>
      error ? reject(listenError("gRPC", config.host, config.port, "--port", error)) : resolve(bound),
    );
  });
  log.info(
    {
      host: config.host,
      port,
      tls: config.tls ? (config.tls.clientCa ? "mutual" : "server") : "off",
      authTokens: tokens?.size ?? 0,
      maxMessageBytes: sizes.maxMessageBytes,
      maxTensorValues: sizes.maxTensorValues,
      maxImagePixels: imagePixels,
      derivedLimits: [...sizes.derived, ...(config.limits.maxImagePixels ? [] : ["maxImagePixels"])],
    },
    "gRPC listening; loading models",
  );

  let metricsServer: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  let playground: PlaygroundServer | undefined;
  let healthPort: HealthPort | undefined;
  const closeAll = async () => {
    await control.close();
    await Promise.all(registry.all().map((engine) => engine.close()));
    server.forceShutdown();
    await playground?.close();
    await healthPort?.close();
    await new Promise<void>((resolve) => (metricsServer ? metricsServer.server.close(() => resolve()) : resolve()));
  };
  try {
    if (config.health) {
      healthPort = await serveHealthPort(health, {
        ...config.health,
        receiveTimeoutMs: config.receiveTimeoutMs,
        upkeep: { ...config, maxConcurrentStreams: config.limits.maxConcurrentStreams },
      });
      log.info({ host: config.health.host, port: healthPort.port }, "grpc.health.v1 on the health port");
    }
    if (config.metrics) {
      metricsServer = await serveMetrics(metrics, config.metrics.host, config.metrics.port);
      log.info({ host: config.metrics.host, port: metricsServer.port }, "metrics at /metrics");
    }
    if (config.http) {
      playground = await servePlayground(
        {
          ...config.http,
          tls: config.tls,
          tokens,
          sizes,
          inflight,
          streamWriteIdleMs: config.streamWriteIdleMs,
          receiveTimeoutMs: config.receiveTimeoutMs,
          v2: createRestApi(registry, control, health, metrics, log, {
            tokens,
            inflight,
            receiveTimeoutMs: config.receiveTimeoutMs,
            maxBatch: config.maxBatch,
            sizes,
          }),
        },
        registry,
        metrics,
        log,
      );
      log.info(
        { host: config.http.host, port: playground.port, url: playground.url },
        `playground at ${playground.url}`,
      );
    }
    await options.onListening?.(port);
    await control.start();
  } catch (error) {
    await closeAll();
    throw error;
  }
  registry.markLoaded();
  let stopping: Promise<void> | undefined;
  // A model reads SERVING while a version of it serves: loaded, unloaded, or its workers dying and
  // coming back, from the moment it changes.
  followModelSet(registry, control, health, metrics, () => stopping !== undefined);
  health.setStatus("", "SERVING");
  health.setStatus(CTM_SERVICE, "SERVING");
  log.info(
    { port, models: registry.all().map((e) => e.name), failed: registry.failed().map((f) => f.name) },
    "serving",
  );

  const shutdown = (graceMs = config.graceMs) => {
    stopping ??= (async () => {
      log.info({ graceMs }, "shutting down: draining in-flight requests");
      health.setStatus("", "NOT_SERVING");
      health.setStatus(CTM_SERVICE, "NOT_SERVING");
      for (const model of registry.listed()) health.setStatus(modelHealthService(nameOf(model)), "NOT_SERVING");
      // Model control stops (its unloaded versions finish draining) while the served ones drain.
      await Promise.all([control.close(), ...registry.all().map((engine) => engine.drain(graceMs))]);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await closeAll();
      log.info("stopped");
    })();
    return stopping;
  };
  return {
    port,
    metricsPort: metricsServer?.port ?? null,
    httpPort: playground?.port ?? null,
    healthPort: healthPort?.port ?? null,
    registry,
    control,
    health,
    shutdown,
  };
}

/** Height x width of an image input's [channels, height, width] shape. */
function pixelsOf(shape: readonly number[]): number {
  return (shape.at(-1) ?? 1) * (shape.at(-2) ?? 1);
}

/**
 * The inputs of every model version in the folder, from their manifests alone (any of them may be
 * loaded while the server runs). A folder that cannot be read is left out here: loading it reports the
 * error (or stops the start) with the details.
 */
function servedInputs(modelsDir: string): ServedInput[] {
  let folders: string[];
  try {
    folders = listRepository(modelsDir).flatMap((model) => model.versions.map((v) => v.dir));
  } catch {
    return [];
  }
  return folders.flatMap((dir) => {
    try {
      const { input } = loadModelFolder(dir).manifest;
      return [{ kind: input.kind, shape: input.shape }];
    } catch {
      return [];
    }
  });
}
