/**
 * The health port's thread (healthPort.ts): a grpc-js server with grpc.health.v1 and nothing else,
 * mirroring the main thread's statuses, and NOT_SERVING everywhere while the main loop's heartbeat
 * is older than `stallMs`. It keeps connections as the gRPC port does (keepalive, idle timeout,
 * streams per connection, bytes counted as they arrive and timed), and reads only messages of the
 * size a health request can have.
 */
import { parentPort, workerData } from "node:worker_threads";
import * as grpc from "@grpc/grpc-js";
import { listenError } from "../../listenError.ts";
import { connectionOptions } from "../grpc/connectionUpkeep.ts";
import { InflightBytes } from "../grpc/inflightBytes.ts";
import { arrivalInterceptor } from "../grpc/requestArrival.ts";
import type { HealthPortMessage, HealthPortWorkerData } from "./healthPort.ts";
import { HealthService, MAX_SERVICE_NAME_CHARS, type ServingStatus } from "./healthService.ts";

/** A HealthCheckRequest of the longest name served, with room to spare; larger: RESOURCE_EXHAUSTED. */
const MAX_MESSAGE_BYTES = 4 * MAX_SERVICE_NAME_CHARS;
/** Bytes of health requests arriving at once, all connections together. */
const MAX_ARRIVING_BYTES = 4 * 1024 * 1024;

const data = workerData as HealthPortWorkerData;
const port = parentPort as NonNullable<typeof parentPort>;
const beat = new BigInt64Array(data.heartbeat);
const wanted = new Map<string, ServingStatus>(Object.entries(data.statuses));
const health = new HealthService(data.statuses);
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

// This thread has grpc-js to itself: its line on a port it cannot bind repeats the error the main
// thread reports, naming --health-port; anything else it says still goes to stderr.
grpc.setLogger({
  error: (...args: unknown[]) => {
    const text = args.map(String).join(" ");
    if (!/No address added out of total/.test(text)) console.error(text);
  },
});

const server = new grpc.Server({
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  ...connectionOptions(data.upkeep),
  interceptors: [
    arrivalInterceptor({
      inflight: new InflightBytes(MAX_ARRIVING_BYTES),
      receiveTimeoutMs: data.receiveTimeoutMs,
      maxMessageBytes: MAX_MESSAGE_BYTES,
      tooLarge: (bytes: number) =>
        `the request message is ${bytes} bytes, beyond the ${MAX_MESSAGE_BYTES} the health port reads (a service name has at most ${MAX_SERVICE_NAME_CHARS} characters)`,
      onMissingStream: () =>
        console.error(
          "ctm-serve health port: grpc-js no longer shows a call's HTTP/2 stream where callStream.ts looks. This is a bug.",
        ),
    }),
  ],
});
health.addToServer(server);
server.bindAsync(`${data.host}:${data.port}`, grpc.ServerCredentials.createInsecure(), (error, bound) => {
  const message: HealthPortMessage = error
    ? { kind: "failed", message: listenError("the health port", data.host, data.port, "--health-port", error).message }
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
