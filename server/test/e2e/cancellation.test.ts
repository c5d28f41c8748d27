/**
 * A client that cancels, or whose deadline passes, stops costing compute at the next tick boundary
 * and gives its batch slot back; a full queue is refused at once. What the server computed is read
 * from its own metrics (ctm_ticks_used by reason, ctm_active_requests), so the assertions do not
 * depend on how fast the machine is. The requests under test share their batch with dozens of
 * others, which makes each tick slow compared to the round trip of a cancellation.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type ClientReadableStream, type ServiceError, status } from "@grpc/grpc-js";
import {
  type GoldenCase,
  MODEL_NAME,
  metricValue,
  readModelJson,
  samples,
  startTestServer,
  type TestServer,
  tensorRequest,
} from "../../../tools/harness/testServer.ts";
import type {
  ClassifyRequestMessage,
  ModelInfoMessage,
  TickUpdateMessage,
} from "../../src/transport/ctmV1/ctmProtocol.ts";

const BATCH = 64;

/** Resolves when the stream ends: undefined on success, else its error. */
function ended(stream: ClientReadableStream<TickUpdateMessage>): Promise<ServiceError | undefined> {
  return new Promise((resolve) => {
    stream.on("data", () => {});
    stream.on("error", (error: ServiceError) => resolve(error));
    stream.on("end", () => resolve(undefined));
  });
}

const firstTick = (stream: ClientReadableStream<TickUpdateMessage>) =>
  new Promise<void>((resolve) => stream.once("data", () => resolve()));

describe("cancellation, deadlines and the queue bound", () => {
  let t: TestServer;
  let model: ModelInfoMessage;
  let request: ClassifyRequestMessage;

  before(async () => {
    // No queue: a request is either in the batch or refused.
    t = await startTestServer({ maxBatch: BATCH, maxQueue: 0 });
    model = await t.client.getModel(MODEL_NAME);
    const golden = readModelJson<{ cases: GoldenCase[] }>("golden.json").cases[0] as GoldenCase;
    request = tensorRequest(golden, { min_ticks: model.trained_ticks, max_ticks: model.trained_ticks });
  });
  after(() => t.close());

  const metric = async (name: string, labels: Record<string, string>) =>
    metricValue(await t.metrics(), name, { model: MODEL_NAME, ...labels });

  /** The server learns of a cancellation asynchronously: waits (bounded) until it has counted `n`. */
  async function cancellationsReach(n: number, timeoutMs = 10_000): Promise<boolean> {
    for (let waited = 0; (await metric("ctm_ticks_used_count", { reason: "CANCELLED" })) < n; waited += 10) {
      if (waited >= timeoutMs) return false;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return true;
  }

  /**
   * `n` unary requests that run every tick, all admitted when this resolves (each one holds a batch
   * slot or is already done). Unary, so they make every tick slow without keeping the main thread
   * busy with per-tick messages.
   */
  async function busy(n: number): Promise<Promise<unknown>> {
    let finished = 0;
    const done = Promise.all(Array.from({ length: n }, () => t.client.classify(request).then(() => finished++)));
    while ((await metric("ctm_active_requests", {})) + finished < n)
      await new Promise((resolve) => setTimeout(resolve, 5));
    return done;
  }

  it("stops a cancelled stream at the next tick and gives its slot back", async () => {
    const load = await busy(BATCH - 1);
    const stream = t.client.stream(request);
    const end = ended(stream);
    await firstTick(stream);
    stream.cancel();
    assert.equal((await end)?.code, status.CANCELLED);
    await load;

    assert.ok(await cancellationsReach(1), "the server never counted the cancellation");
    assert.equal(await metric("ctm_ticks_used_count", { reason: "CANCELLED" }), 1);
    const ticks = await metric("ctm_ticks_used_sum", { reason: "CANCELLED" });
    assert.ok(
      ticks >= 1 && ticks < model.trained_ticks,
      `the cancelled request ran ${ticks} of ${model.trained_ticks} ticks`,
    );
    assert.equal(await metric("ctm_requests_total", { method: "ClassifyStream", status: "CANCELLED" }), 1);
    // No slot leaked: a full batch of new requests gets in, with no queue to wait in.
    assert.equal(await metric("ctm_active_requests", {}), 0);
    const responses = await Promise.all(Array.from({ length: BATCH }, () => t.client.classify(request)));
    assert.ok(responses.every((r) => r.ticks_used === model.trained_ticks));
  });

  it("stops a request whose gRPC deadline passes while it runs", async () => {
    // The deadline must pass after the request's first tick and before its last. How long that is
    // depends on the machine, so the deadline adapts until one run lands in between.
    let deadlineMs = 100;
    for (let attempt = 1; attempt <= 10; attempt++) {
      const count = await metric("ctm_ticks_used_count", { reason: "CANCELLED" });
      const sum = await metric("ctm_ticks_used_sum", { reason: "CANCELLED" });
      const expired = await metric("ctm_requests_total", { method: "ClassifyStream", status: "DEADLINE_EXCEEDED" });
      const load = await busy(BATCH - 1);
      const error = await ended(t.client.stream(request, { deadline: new Date(Date.now() + deadlineMs) }));
      await load;
      if (error === undefined) {
        deadlineMs /= 2; // it finished in time
        continue;
      }
      assert.equal(error.code, status.DEADLINE_EXCEEDED);
      const stopped = await cancellationsReach(count + 1, 2000);
      const computed = (await metric("ctm_ticks_used_sum", { reason: "CANCELLED" })) - sum;
      if (!stopped || computed === 0) {
        // It had finished on the server (the client was still reading), or never started.
        deadlineMs = stopped ? deadlineMs * 2 : deadlineMs / 2;
        continue;
      }
      assert.ok(computed < model.trained_ticks, `the expired request ran ${computed} of ${model.trained_ticks} ticks`);
      assert.equal(
        await metric("ctm_requests_total", { method: "ClassifyStream", status: "DEADLINE_EXCEEDED" }),
        expired + 1,
      );
      return;
    }
    assert.fail(`no deadline landed mid-run; the last one tried was ${deadlineMs} ms`);
  });

  it("refuses at once with RESOURCE_EXHAUSTED when the batch and the queue are full", async () => {
    // A small server and a burst of image requests: each holds its place from the moment it arrives
    // (while its image is decoded), so the burst overruns 4 slots + 4 queue places at once.
    const small = await startTestServer({ maxBatch: 4, maxQueue: 4 });
    try {
      const image = {
        model: MODEL_NAME,
        image: { data: (samples()[0] as { png: Buffer }).png },
        halt_policy: request.halt_policy,
      };
      const results = await Promise.all(
        Array.from({ length: 64 }, () =>
          small.client.classify(image).then(
            () => undefined,
            (e: ServiceError) => e,
          ),
        ),
      );
      const refused = results.filter((e) => e !== undefined);
      assert.ok(refused.length > 0, "every request was admitted");
      assert.ok(refused.length < results.length, "every request was refused");
      for (const error of refused) {
        assert.equal(error.code, status.RESOURCE_EXHAUSTED);
        assert.match(
          error.details,
          /^model mnist-ctm is at capacity: \d+ request\(s\) running \(max-batch 4 x 1 worker\(s\)\) and \d+ waiting \(max-queue 4\); retry later$/,
        );
      }
      assert.equal((await small.client.classify(image)).ticks_used, model.trained_ticks);
    } finally {
      await small.close();
    }
  });
});
