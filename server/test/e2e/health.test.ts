/**
 * Generic gRPC tooling works: grpc.health.v1 reports NOT_SERVING while models load and while the
 * server drains, SERVING in between; server reflection describes the services. Shutdown lets
 * in-flight requests finish within the grace period and cancels what is left after it.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { reflect } from "../../../tools/harness/index.ts";
import { type GoldenCase, readModelJson, startTestServer, tensorRequest } from "../../../tools/harness/testServer.ts";
import type { ClassifyRequestMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { checkHealth, healthClient, type ServingStatus, watchHealth } from "../support/healthClient.ts";

const local = (port: number) => healthClient(`127.0.0.1:${port}`);

const fullRequest = (): ClassifyRequestMessage => {
  const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
  return tensorRequest(golden.cases[0] as GoldenCase, { min_ticks: golden.ticks, max_ticks: golden.ticks });
};

describe("health", () => {
  it("is NOT_SERVING while the models load, then SERVING", async () => {
    let whileLoading: ServingStatus[] = [];
    const t = await startTestServer(
      {},
      {
        onListening: async (port) => {
          const client = local(port);
          whileLoading = [await checkHealth(client, ""), await checkHealth(client, "ctm.v1.CtmService")];
          client.close();
        },
      },
    );
    try {
      assert.deepEqual(whileLoading, ["NOT_SERVING", "NOT_SERVING"]);
      const client = local(t.server.port);
      assert.equal(await checkHealth(client, ""), "SERVING");
      assert.equal(await checkHealth(client, "ctm.v1.CtmService"), "SERVING");
      const unknown = await checkHealth(client, "no.such.Service").then(
        () => undefined,
        (error: grpc.ServiceError) => error.code,
      );
      assert.equal(unknown, grpc.status.NOT_FOUND);
      client.close();
    } finally {
      await t.close();
    }
  });

  it("turns NOT_SERVING when draining, lets in-flight requests finish and refuses new ones", async () => {
    const t = await startTestServer({ graceMs: 30_000 });
    const client = local(t.server.port);
    const { seen, notServing } = watchHealth(client);

    const request = fullRequest();
    const inFlight = Array.from({ length: 16 }, () => t.client.classify(request));
    const stream = t.client.stream(request);
    await new Promise((resolve) => stream.once("data", resolve));
    const streamed = (async () => {
      let n = 1;
      for await (const _ of stream) n++;
      return n;
    })();

    const stopped = t.server.shutdown();
    await notServing;
    assert.deepEqual(seen, ["SERVING", "NOT_SERVING"]);
    const refused = await t.client.classify(request).then(
      () => undefined,
      (error: grpc.ServiceError) => error,
    );
    assert.equal(refused?.code, grpc.status.UNAVAILABLE);

    const responses = await Promise.all(inFlight);
    assert.ok(responses.every((r) => r.ticks_used === request.halt_policy?.max_ticks));
    assert.equal(await streamed, request.halt_policy?.max_ticks);
    await stopped;
    client.close();
    t.client.close();
  });

  it("cancels what is still running when the grace period ends", async () => {
    const t = await startTestServer();
    const request = fullRequest();
    const calls = Array.from({ length: 32 }, () =>
      t.client.classify(request).then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      ),
    );
    const stream = t.client.stream(request);
    const streamed = new Promise<grpc.ServiceError | undefined>((resolve) => {
      stream.on("data", () => {});
      stream.on("error", resolve);
      stream.on("end", () => resolve(undefined));
    });
    await new Promise((resolve) => stream.once("data", resolve));
    await t.server.shutdown(0);
    const errors = [...(await Promise.all(calls)), await streamed].filter((e) => e !== undefined);
    assert.ok(errors.length > 0, "every request finished before the server stopped");
    for (const error of errors) {
      assert.equal(error.code, grpc.status.UNAVAILABLE);
      assert.match(error.details, /^the server shut down before this request finished \(grace period 0 ms\)$/);
    }
    assert.ok(t.logs.some((line) => line.msg.includes("grace period over; cancelling in-flight requests")));
    t.client.close();
  });
});

describe("reflection", () => {
  it("lists the services and describes ctm.v1.CtmService", async () => {
    const t = await startTestServer();
    try {
      const responses = await reflect(t.address, [
        { list_services: "" },
        { file_containing_symbol: "ctm.v1.CtmService" },
      ]);
      assert.equal(responses.length, 2);

      const [listed, described_] = responses as [Record<string, unknown>, Record<string, unknown>];
      const services = (listed.list_services_response as { service: { name: string }[] }).service.map((s) => s.name);
      for (const name of ["ctm.v1.CtmService", "grpc.health.v1.Health"])
        assert.ok(services.includes(name), `${name} in ${services}`);
      const files = (described_.file_descriptor_response as { file_descriptor_proto: Buffer[] }).file_descriptor_proto;
      const described = Buffer.concat(files).toString("latin1");
      for (const name of ["ctm.v1", "ClassifyStream", "HaltPolicy", "certainty_threshold"]) {
        assert.ok(described.includes(name), `the descriptor mentions ${name}`);
      }
    } finally {
      await t.close();
    }
  });
});
