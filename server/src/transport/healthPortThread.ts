/**
 * The health port's thread (healthPort.ts): a grpc-js server with grpc.health.v1 and nothing else,
 * mirroring the main thread's statuses, and NOT_SERVING everywhere while the main loop's heartbeat
 * is older than `stallMs`.
 */
import { parentPort, workerData } from "node:worker_threads";
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation, type ServingStatus } from "grpc-health-check";
import type { HealthPortMessage, HealthPortWorkerData } from "./healthPort.ts";

const data = workerData as HealthPortWorkerData;
const port = parentPort as NonNullable<typeof parentPort>;
const beat = new BigInt64Array(data.heartbeat);
const wanted = new Map<string, ServingStatus>(Object.entries(data.statuses));
const health = new HealthImplementation(data.statuses);
let stalled = false;

function apply(): void {
  for (const [service, status] of wanted) health.setStatus(service, stalled ? "NOT_SERVING" : status);
}

const watch = setInterval(
  () => {
    const now = Date.now() - Number(Atomics.load(beat, 0)) > data.stallMs;
    if (now !== stalled) {
      stalled = now;
      apply();
    }
  },
  Math.max(10, Math.min(250, data.stallMs / 4)),
);

const server = new grpc.Server();
health.addToServer(server);
server.bindAsync(`${data.host}:${data.port}`, grpc.ServerCredentials.createInsecure(), (error, bound) => {
  const message: HealthPortMessage = error
    ? { kind: "failed", message: `cannot listen on ${data.host}:${data.port} (--health-port): ${error.message}` }
    : { kind: "listening", port: bound };
  port.postMessage(message);
  if (error) shutdown();
});

port.on("message", (message: HealthPortMessage) => {
  if (message.kind === "status") {
    wanted.set(message.service, message.status);
    health.setStatus(message.service, stalled ? "NOT_SERVING" : message.status);
  } else if (message.kind === "close") {
    shutdown();
  }
});

function shutdown(): void {
  clearInterval(watch);
  // Watch streams never end by themselves: give calls a moment, then cut them.
  const cut = setTimeout(() => {
    server.forceShutdown();
    port.close();
  }, 500);
  server.tryShutdown(() => {
    clearTimeout(cut);
    port.close();
  });
}
