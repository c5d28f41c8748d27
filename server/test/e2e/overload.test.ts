/**
 * Overload: far more concurrent requests than a small server holds. Those beyond capacity are refused
 * at once with RESOURCE_EXHAUSTED (naming --max-batch and --max-queue), before any admitted request
 * has finished; every admitted request gets the same answer it would get alone; and the server then
 * serves normally. Order, not time, is asserted: speed belongs to the benchmarks.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  MODEL_NAME,
  metricValue,
  type Sample,
  samples,
  startTestServer,
  type TestServer,
} from "../../../tools/harness/testServer.ts";
import type { ClassifyRequestMessage, ClassifyResponseMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { healthOf } from "../support/healthClient.ts";

const MAX_BATCH = 4;
const MAX_QUEUE = 4;
const REQUESTS = 60;

describe("overload", () => {
  let t: TestServer;
  let sample: Sample;
  let request: ClassifyRequestMessage;
  let alone: ClassifyResponseMessage;

  before(async () => {
    t = await startTestServer({ maxBatch: MAX_BATCH, maxQueue: MAX_QUEUE, workers: 1 });
    sample = samples()[0] as Sample;
    // Every request runs every tick the model allows, so admitted ones hold their slots as long as possible.
    const { max_ticks } = await t.client.getModel(MODEL_NAME);
    request = {
      model: MODEL_NAME,
      image: { data: sample.png },
      halt_policy: { min_ticks: max_ticks, max_ticks },
    };
    alone = await t.client.classify(request);
    assert.equal(alone.ticks_used, max_ticks);
  });
  after(() => t.close());

  it("refuses what is beyond --max-batch and --max-queue at once, and answers every admitted request correctly", async () => {
    const events: (
      | { kind: "ok"; response: ClassifyResponseMessage }
      | { kind: "refused"; error: grpc.ServiceError }
    )[] = [];
    // Fired together on one warm connection, so they arrive together.
    await Promise.all(
      Array.from({ length: REQUESTS }, () =>
        t.client.classify(request).then(
          (response) => events.push({ kind: "ok", response }),
          (error: grpc.ServiceError) => events.push({ kind: "refused", error }),
        ),
      ),
    );

    const capacity = MAX_BATCH * 1 + MAX_QUEUE;
    const refused = events.filter((e) => e.kind === "refused");
    const admitted = events.filter((e) => e.kind === "ok");
    assert.equal(admitted.length, capacity, "exactly the batch slots and the queue are admitted");
    assert.equal(refused.length, REQUESTS - capacity);
    for (const { error } of refused) {
      assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED, `${error.code} ${error.details}`);
      assert.match(
        error.details,
        new RegExp(
          `^model ${MODEL_NAME} is at capacity: \\d+ request\\(s\\) running \\(max-batch ${MAX_BATCH} x 1 worker\\(s\\)\\) and \\d+ waiting \\(max-queue ${MAX_QUEUE}\\); retry later$`,
        ),
      );
    }
    // Refused on arrival: every refusal reached the client before the first admitted answer did.
    const firstAnswer = events.findIndex((e) => e.kind === "ok");
    assert.equal(
      firstAnswer,
      REQUESTS - capacity,
      `answers and refusals came in this order: ${events.map((e) => e.kind)}`,
    );
    // Batched with others under load, each admitted request is answered as it is alone.
    for (const { response } of admitted) {
      assert.equal(response.top_k[0]?.index, sample.label);
      assert.equal(response.top_k[0]?.index, alone.top_k[0]?.index);
      assert.equal(response.ticks_used, alone.ticks_used);
      assert.equal(response.answer_tick, alone.answer_tick);
      assert.ok(Math.abs(response.certainty - alone.certainty) < 1e-5, `${response.certainty} vs ${alone.certainty}`);
    }
    const metrics = await t.metrics();
    assert.equal(metricValue(metrics, "ctm_requests_total", { status: "RESOURCE_EXHAUSTED" }), REQUESTS - capacity);
  });

  it("serves normally afterwards: health SERVING, a full batch admitted and answered", async () => {
    assert.deepEqual(await healthOf(t.address), ["SERVING"]);
    const again = await Promise.all(Array.from({ length: MAX_BATCH + MAX_QUEUE }, () => t.client.classify(request)));
    for (const response of again) assert.equal(response.top_k[0]?.index, sample.label);
    const plain = await t.client.classify({ model: MODEL_NAME, image: { data: sample.png } });
    assert.equal(plain.top_k[0]?.index, sample.label);
  });
});
