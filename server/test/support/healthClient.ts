/**
 * grpc.health.v1 from the tests' side: the shared Health client (tools/harness), a Check that resolves
 * with the status it reads, and a Watch held open until the test cancels it.
 */
import * as grpc from "@grpc/grpc-js";
import { createHealthClient, type HealthClient, type ServingStatus } from "../../../tools/harness/index.ts";

export type { HealthClient, ServingStatus };

export function healthClient(address: string, credentials = grpc.credentials.createInsecure()): HealthClient {
  return createHealthClient(address, credentials);
}

/** One Check of `service` ("" for the whole server). */
export async function checkHealth(client: HealthClient, service = ""): Promise<ServingStatus> {
  return (await client.Check({ service })).status;
}

/** The status of each service, read over a channel of its own that is closed afterwards. */
export async function healthOf(
  address: string,
  services: readonly string[] = [""],
  credentials = grpc.credentials.createInsecure(),
): Promise<ServingStatus[]> {
  const client = healthClient(address, credentials);
  try {
    return await Promise.all(services.map((service) => checkHealth(client, service)));
  } finally {
    client.close();
  }
}

/** An open Watch: the call stays open (on the server too) until `cancel()`. */
export interface OpenWatch {
  /** The statuses it was sent, in order. */
  seen: ServingStatus[];
  /** Resolves with the first status, or rejects with the error that ended the Watch. */
  first: Promise<ServingStatus>;
  cancel(): void;
}

export function openWatch(
  client: HealthClient,
  service = "",
  onStatus: (status: ServingStatus) => void = () => {},
): OpenWatch {
  const stop = new AbortController();
  const seen: ServingStatus[] = [];
  const updates = client.Watch({ service }, { signal: stop.signal });
  let firstSeen: (status: ServingStatus) => void = () => {};
  const first = new Promise<ServingStatus>((resolve, reject) => {
    firstSeen = resolve;
    void (async () => {
      try {
        for await (const { status } of updates) {
          seen.push(status);
          firstSeen(status);
          onStatus(status);
        }
      } catch (error) {
        reject(error);
      }
    })();
  });
  // A test may never read `first` (it only cancels): an ended Watch must not be an unhandled rejection.
  first.catch(() => {});
  return { seen, first, cancel: () => stop.abort() };
}

/** A Watch of `service` that records every status it is sent; `notServing` resolves at the first NOT_SERVING. */
export function watchHealth(client: HealthClient, service = "") {
  let sawNotServing: () => void = () => {};
  const notServing = new Promise<void>((resolve) => {
    sawNotServing = resolve;
  });
  const watch = openWatch(client, service, (status) => {
    if (status === "NOT_SERVING") sawNotServing();
  });
  return { call: watch, seen: watch.seen, notServing };
}
