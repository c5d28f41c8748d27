/**
 * Tick-level batching must not change any result: a request that shares its tick runs with others,
 * at other ticks, gets the same logits and certainty as when it runs alone.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
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
import type { ClassifyRequestMessage, TickUpdateMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";

const TOLERANCE = 1e-5;
const GROUP = 8;

describe("batched and alone give the same results", () => {
  let t: TestServer;
  let ticks: number;
  const requests: ClassifyRequestMessage[] = [];

  before(async () => {
    t = await startTestServer();
    ticks = (await t.client.getModel(MODEL_NAME)).trained_ticks;
    const all = { min_ticks: ticks, max_ticks: ticks };
    for (const golden of readModelJson<{ cases: GoldenCase[] }>("golden.json").cases)
      requests.push(tensorRequest(golden, all));
    for (const sample of samples()) {
      if (requests.length === 2 * GROUP) break;
      requests.push({ model: MODEL_NAME, image: { data: sample.png }, halt_policy: all });
    }
  });
  after(() => t.close());

  it("within 1e-5 at every tick, with rows joining at different ticks", async () => {
    const alone: TickUpdateMessage[][] = [];
    for (const request of requests) alone.push(await t.client.collect(request));

    // The second group is sent once the first has produced a tick, so the two groups' rows share tick
    // runs while they are at different ticks.
    const first = requests.slice(0, GROUP).map((r) => t.client.stream(r));
    const firstTick = new Promise<void>((resolve) => first[0]?.once("data", () => resolve()));
    const collect = async (stream: AsyncIterable<TickUpdateMessage>) => {
      const out: TickUpdateMessage[] = [];
      for await (const message of stream) out.push(message);
      return out;
    };
    const firstResults = Promise.all(first.map(collect));
    await firstTick;
    const secondResults = Promise.all(requests.slice(GROUP).map((r) => collect(t.client.stream(r))));
    const batched = [...(await firstResults), ...(await secondResults)];

    let worst = 0;
    batched.forEach((run, r) => {
      const reference = alone[r] as TickUpdateMessage[];
      assert.equal(run.length, ticks);
      run.forEach((message, i) => {
        const expected = reference[i] as TickUpdateMessage;
        worst = Math.max(worst, Math.abs(message.certainty - expected.certainty));
        message.logits.forEach((v, j) => {
          worst = Math.max(worst, Math.abs(v - (expected.logits[j] as number)));
        });
      });
    });
    assert.ok(worst <= TOLERANCE, `largest difference between batched and alone: ${worst}`);

    // Proof that the groups really were batched together: some tick run had more rows than one group.
    const text = await t.metrics();
    const runs = metricValue(text, "ctm_batch_size_count", { model: MODEL_NAME });
    const small = metricValue(text, "ctm_batch_size_bucket", { model: MODEL_NAME, le: String(GROUP) });
    assert.ok(runs - small > 0, `no tick run advanced more than ${GROUP} rows`);
  });
});
