/**
 * The health port (--health-port): grpc.health.v1 answered from a thread of its own.
 *
 * On the gRPC port a Check waits its turn on the event loop that also decodes requests and writes
 * answers, so while the server is saturated a probe takes as long as that queue: about 3x an idle
 * server's p99 on two cores (docs/benchmarks.md). Orchestrators read a slow probe as a sick replica
 * and restart or drain it at exactly the moment it is busiest. Here the answer comes from a thread
 * that does nothing else, in the time the machine takes to schedule it.
 *
 * It must still not say SERVING for a server that has stopped: the statuses are the main thread's
 * (ServingHealth forwards every change), and the main event loop writes a heartbeat into shared memory
 * every HEARTBEAT_MS; when none has come for `stallMs`, every service reads NOT_SERVING until one
 * does. The port is plaintext on purpose: Kubernetes' gRPC probes cannot speak TLS, and nothing but
 * grpc.health.v1 is served on it.
 */
import type { Worker } from "node:worker_threads";
import { spawnWorker } from "../../engine/spawnWorker.ts";
import { ListenError } from "../../listenError.ts";
import type { ConnectionUpkeep } from "../grpc/connectionUpkeep.ts";
import type { ServingStatus } from "./healthService.ts";
import type { ServingHealth } from "./servingHealth.ts";

const HEARTBEAT_MS = 100;

export interface HealthPortOptions {
  host: string;
  /** 0: any free port (tests); the bound one is `HealthPort.port`. */
  port: number;
  /** How long the main event loop may go without running before every service reads NOT_SERVING. */
  stallMs: number;
  /** The gRPC port's keepalive, idle and stream settings: without them broken connections stayed for good. */
  upkeep: ConnectionUpkeep;
  /** How long a request may take to arrive (--receive-timeout-ms). */
  receiveTimeoutMs: number;
}

export interface HealthPort {
  port: number;
  close(): Promise<void>;
}

/** What travels between the main thread and the health port's thread. */
export type HealthPortMessage =
  | { kind: "status"; service: string; status: ServingStatus }
  | { kind: "close" }
  | { kind: "listening"; port: number }
  | { kind: "failed"; message: string };

export interface HealthPortWorkerData extends HealthPortOptions {
  statuses: Record<string, ServingStatus>;
  /** One BigInt64: Date.now() at the main loop's latest heartbeat. */
  heartbeat: SharedArrayBuffer;
}

export async function serveHealthPort(health: ServingHealth, options: HealthPortOptions): Promise<HealthPort> {
  const heartbeat = new SharedArrayBuffer(8);
  const beat = new BigInt64Array(heartbeat);
  const beatNow = () => Atomics.store(beat, 0, BigInt(Date.now()));
  beatNow();
  const data: HealthPortWorkerData = { ...options, statuses: health.snapshot(), heartbeat };
  const worker = spawnWorker(new URL("./healthPortThread.ts", import.meta.url), data);
  // Subscribed at once, with the snapshot just taken: no change can fall between the two. The thread
  // receives what is posted before it listens once it does.
  const post = (message: HealthPortMessage) => send(worker, message);
  const stop = health.onChange((service, status) => post({ kind: "status", service, status }));
  let exitCode: number | undefined;
  const exited = new Promise<void>((resolve) =>
    worker.once("exit", (code) => {
      exitCode = code;
      resolve();
    }),
  );
  // A thread that fails after listening takes only the health port down; the gRPC port still answers.
  let failure: Error | undefined;
  worker.on("error", (error) => (failure ??= error));
  const port = await Promise.race([
    new Promise<number>((resolve, reject) =>
      worker.on("message", (message: HealthPortMessage) => {
        if (message.kind === "listening") resolve(message.port);
        if (message.kind === "failed") reject(new ListenError(message.message));
      }),
    ),
    exited.then(() => {
      throw failure ?? new Error(`the health port's thread exited (code ${exitCode}) before listening`);
    }),
  ]).catch(async (error: Error) => {
    stop();
    await worker.terminate();
    throw error;
  });
  const timer = setInterval(beatNow, HEARTBEAT_MS);
  timer.unref();
  let closing: Promise<void> | undefined;
  return {
    port,
    close: () => {
      closing ??= (async () => {
        clearInterval(timer);
        stop();
        post({ kind: "close" });
        // The thread ends its own server; a probe stuck mid-call cannot hold the shutdown.
        const cut = setTimeout(() => void worker.terminate(), 2000);
        await exited;
        clearTimeout(cut);
      })();
      return closing;
    },
  };
}

function send(worker: Worker, message: HealthPortMessage): void {
  try {
    worker.postMessage(message);
  } catch {
    // The thread has gone: there is no one left to tell.
  }
}
