/**
 * grpc.health.v1 (Check, Watch, List) over a table of statuses. Written here rather than taken from
 * grpc-health-check 2.1.0's HealthImplementation, whose Watch keeps a Map entry for every service name
 * ever watched (its removeWatcher empties the entry's Set but never deletes the key), takes any name
 * length and queues every status for a client that does not read, and whose Check echoes the whole
 * name back. Health needs no token and the health port is plaintext even under mutual TLS, so those
 * were open to anyone: Watches of 1 MB names, cancelled, kept 1.4 GB live for good. The package still
 * supplies the service definition, so that the wire contract is the one every probe speaks.
 *
 * Bounds: a service name of at most MAX_SERVICE_NAME_CHARS (longer: INVALID_ARGUMENT, quoted cut
 * short), at most `maxWatches` Watch calls at once (more: RESOURCE_EXHAUSTED), an entry per name only
 * while someone watches it, and for a watcher that does not read, only its latest status waits.
 */
import * as grpc from "@grpc/grpc-js";
import { service as healthDefinition } from "grpc-health-check";
import { echo } from "../../engine/serverError.ts";

export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING";
export type ServingStatusMap = Record<string, ServingStatus>;
export type WatchStatus = ServingStatus | "SERVICE_UNKNOWN";

/** Longer than any name this server gives a service ("ctm.v1.CtmService/<model>"). */
export const MAX_SERVICE_NAME_CHARS = 256;
/** Watch calls open at once, by default: each costs a stream and a few KB. */
export const MAX_WATCHES = 1000;
/** List answers at most this many services (grpc.health.v1 asks servers to bound it). */
const MAX_LISTED = 100;

type Watcher = (status: WatchStatus) => void;
type Call = grpc.ServerUnaryCall<{ service?: string }, unknown>;
type WatchCall = grpc.ServerWritableStream<{ service?: string }, { status: WatchStatus }>;

export class HealthService {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Map<string, Set<Watcher>>();
  private watches = 0;

  constructor(
    initial: ServingStatusMap = {},
    private readonly maxWatches = MAX_WATCHES,
  ) {
    for (const [service, status] of Object.entries(initial)) this.statuses.set(service, status);
  }

  setStatus(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    for (const watcher of this.watchers.get(service) ?? []) watcher(status);
  }

  /** What Check answers for `service`; SERVICE_UNKNOWN where it answers NOT_FOUND. */
  statusOf(service: string): WatchStatus {
    return this.statuses.get(service) ?? "SERVICE_UNKNOWN";
  }

  /** Every service and its status now. */
  snapshot(): ServingStatusMap {
    return Object.fromEntries(this.statuses);
  }

  /** Service names watched now, each held once however many watch it. */
  get watchedNames(): number {
    return this.watchers.size;
  }

  /** Watch calls open now. */
  get openWatches(): number {
    return this.watches;
  }

  addToServer(server: grpc.Server): void {
    server.addService(healthDefinition as unknown as grpc.ServiceDefinition, {
      Check: (call: Call, callback: grpc.sendUnaryData<{ status: ServingStatus }>) => {
        const service = call.request.service ?? "";
        const refusal = tooLong(service);
        if (refusal) return callback(refusal);
        const status = this.statuses.get(service);
        if (status) return callback(null, { status });
        callback({ code: grpc.status.NOT_FOUND, details: `Health status unknown for service ${echo(service)}` });
      },
      Watch: (call: WatchCall) => this.watch(call),
      List: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        if (this.statuses.size > MAX_LISTED) {
          return callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: "Too many services to list." });
        }
        const statuses = Object.fromEntries([...this.statuses].map(([service, status]) => [service, { status }]));
        callback(null, { statuses });
      },
    });
  }

  private watch(call: WatchCall): void {
    const service = call.request.service ?? "";
    const refusal = tooLong(service);
    if (refusal) return void call.emit("error", refusal);
    if (this.watches >= this.maxWatches) {
      return void call.emit("error", {
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `this server already has ${this.watches} health Watch calls open, the most it holds; poll with Check, or retry later`,
      });
    }
    this.watches++;
    // A watcher that does not read is sent nothing more until it does, and then only the latest status.
    let blocked = false;
    let latest: WatchStatus | undefined;
    const send: Watcher = (status) => {
      if (blocked) {
        latest = status;
        return;
      }
      if (!call.write({ status })) {
        blocked = true;
        call.once("drain", () => {
          blocked = false;
          const next = latest;
          latest = undefined;
          if (next !== undefined) send(next);
        });
      }
    };
    let set = this.watchers.get(service);
    if (!set) {
      set = new Set();
      this.watchers.set(service, set);
    }
    set.add(send);
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      this.watches--;
      const watching = this.watchers.get(service);
      watching?.delete(send);
      // The entry goes with its last watcher: an unknown name costs nothing once its watch ends.
      if (watching?.size === 0) this.watchers.delete(service);
    };
    call.on("cancelled", end);
    call.on("close", end);
    call.on("error", end);
    send(this.statuses.get(service) ?? "SERVICE_UNKNOWN");
  }
}

function tooLong(service: string): { code: grpc.status; details: string } | undefined {
  if (service.length <= MAX_SERVICE_NAME_CHARS) return undefined;
  return {
    code: grpc.status.INVALID_ARGUMENT,
    details: `service ${echo(service)} is longer than the ${MAX_SERVICE_NAME_CHARS} characters a health service name may have`,
  };
}
