/**
 * grpc.health.v1 from the tests' side: grpc-health-check's service definition as a typed generic
 * client, and a Check that resolves with the status it reads.
 */
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";

export type ServingStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

export type HealthClient = grpc.Client & {
  check(
    request: { service: string },
    callback: (error: grpc.ServiceError | null, response: { status: ServingStatus }) => void,
  ): void;
  watch(request: { service: string }): grpc.ClientReadableStream<{ status: ServingStatus }>;
};

const Health = grpc.makeGenericClientConstructor(healthService, "Health");

export function healthClient(address: string, credentials = grpc.credentials.createInsecure()): HealthClient {
  return new Health(address, credentials) as unknown as HealthClient;
}

/** One Check of `service` ("" for the whole server). */
export function checkHealth(client: HealthClient, service = ""): Promise<ServingStatus> {
  return new Promise((resolve, reject) =>
    client.check({ service }, (error, response) => (error ? reject(error) : resolve(response.status))),
  );
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

/** A Watch of `service` that records every status it is sent; `notServing` resolves at the first NOT_SERVING. */
export function watchHealth(client: HealthClient, service = "") {
  const call = client.watch({ service });
  const seen: ServingStatus[] = [];
  const notServing = new Promise<void>((resolve) =>
    call.on("data", ({ status }: { status: ServingStatus }) => {
      seen.push(status);
      if (status === "NOT_SERVING") resolve();
    }),
  );
  call.on("error", () => {}); // cut when the server stops
  return { call, seen, notServing };
}
