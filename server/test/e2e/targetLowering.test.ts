/**
 * Overload with a latency objective, on the maze model (whose cost is its ticks), on a real server: a
 * burst far above what the workers think through in the objective is served with lowered, stated
 * guarantees, none below the floor; requests without a floor in the same burst are never lowered; what
 * even the floors cannot fit is refused at once; the lowering comes back up once the burst is over; and
 * the metrics count what the clients saw. Order and outcomes are asserted, not speed.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { metricValue, REPO, startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";
import type { ClassifyRequestMessage, ClassifyResponseMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { type CertifiedLadder, certifiedLadder, isCertified } from "../support/certifiedLadder.ts";

const MAZE = "maze-ctm";
/** Well above a lone full-depth run of the maze model (30 ticks at one row), far below the burst's queue. */
const OBJECTIVE_MS = 250;
const MAX_BATCH = 8;
const BURST = 160;

function mazeSamples(): Buffer[] {
  const dir = join(REPO, "models", MAZE, "1", "samples");
  const labels = JSON.parse(readFileSync(join(dir, "labels.json"), "utf8")) as { file: string }[];
  return labels.slice(0, 40).map(({ file }) => readFileSync(join(dir, file)));
}

type Outcome = { flexible: boolean } & (
  | { ok: true; response: ClassifyResponseMessage }
  | { ok: false; error: grpc.ServiceError }
);

describe("thinking less under a burst", () => {
  let t: TestServer;
  let ladder: CertifiedLadder;
  let images: Buffer[];
  const outcomes: Outcome[] = [];

  before(async () => {
    const models = mkdtempSync(join(tmpdir(), "ctm-lowering-"));
    symlinkSync(join(REPO, "models", MAZE), join(models, MAZE));
    t = await startTestServer({
      modelsDir: models,
      maxBatch: MAX_BATCH,
      maxQueue: 10_000,
      latencyObjectiveMs: OBJECTIVE_MS,
    });
    ladder = certifiedLadder(await t.client.getModel(MAZE), "accuracy", 0.95);
    images = mazeSamples();
  });
  after(() => t.close());

  const request = (i: number, flexible: boolean): ClassifyRequestMessage => ({
    model: MAZE,
    image: { data: images[i % images.length] as Buffer },
    halt_policy: flexible
      ? { target_accuracy: ladder.top.target, min_target_accuracy: ladder.floor }
      : { target_accuracy: ladder.top.target },
    top_k: 1,
  });
  const send = (i: number, flexible: boolean) =>
    t.client.classify(request(i, flexible)).then(
      (response) => outcomes.push({ flexible, ok: true, response }),
      (error: grpc.ServiceError) => outcomes.push({ flexible, ok: false, error }),
    );

  it("serves a burst above capacity at lowered, stated guarantees, none below the floor; no floor, never lowered", async () => {
    // A few alone first: the controller plans with the tick runs it has measured.
    for (let i = 0; i < 4; i++) await send(i, true);
    assert.ok(
      outcomes.every((o) => o.ok && !o.response.guarantee?.lowered_by_load),
      "alone, nothing is lowered",
    );
    // Fired together on one connection: every other request gives a floor.
    await Promise.all(Array.from({ length: BURST }, (_, i) => send(i, i % 2 === 0)));

    const answered = outcomes.filter((o): o is Outcome & { ok: true } => o.ok);
    const lowered = answered.filter((o) => o.response.guarantee?.lowered_by_load);
    assert.ok(lowered.length > 0, "the burst lowers some flexible requests");
    for (const { flexible, response } of answered) {
      const g = response.guarantee;
      assert.ok(g);
      assert.equal(g.requested_target, ladder.top.target);
      assert.equal(g.requested_threshold, ladder.top.threshold);
      if (!flexible) {
        assert.equal(g.lowered_by_load, false, "a request without a floor is never lowered");
        assert.equal(g.target, ladder.top.target);
        assert.equal(response.threshold_used, ladder.top.threshold);
        continue;
      }
      assert.equal(g.min_target, ladder.floor);
      assert.ok(g.target >= ladder.floor, `served at ${g.target}, below the floor ${ladder.floor}`);
      assert.equal(response.threshold_used, g.threshold);
      assert.ok(isCertified(ladder, g.target, g.threshold), `${g.target} at ${g.threshold} is certified`);
      assert.equal(g.met, true, g.note);
      if (g.lowered_by_load) {
        assert.ok(g.target < g.requested_target && g.threshold < g.requested_threshold);
        assert.equal(response.applied_policy.target_accuracy, g.target);
      } else {
        assert.equal(g.target, ladder.top.target);
      }
    }
    for (const outcome of outcomes.filter((o): o is Outcome & { ok: false } => !o.ok)) {
      assert.equal(outcome.error.code, grpc.status.RESOURCE_EXHAUSTED, outcome.error.details);
      assert.match(
        outcome.error.details,
        new RegExp(
          `^model ${MAZE} cannot answer within the latency objective: with \\d+ request\\(s\\) waiting it would take about \\d+ ms even with every request that gave a floor served at its floor \\(--latency-objective-ms ${OBJECTIVE_MS}\\); retry later$`,
        ),
      );
    }
  });

  it("counts what the clients saw", async () => {
    const metrics = await t.metrics();
    const answered = outcomes.filter((o): o is Outcome & { ok: true } => o.ok);
    const flexible = answered.filter((o) => o.flexible).map((o) => o.response.guarantee);
    const lowered = flexible.filter((g) => g?.lowered_by_load);
    const refused = outcomes.filter((o) => !o.ok).length;
    const of = (name: string, labels: Record<string, string> = {}) =>
      metricValue(metrics, name, { model: MAZE, ...labels });
    assert.equal(of("ctm_served_target_count"), flexible.length);
    const servedSum = flexible.reduce((sum, g) => sum + (g?.target ?? 0), 0);
    assert.ok(Math.abs(of("ctm_served_target_sum") - servedSum) < 1e-6);
    assert.equal(of("ctm_target_lowered_by_count"), lowered.length);
    const by = lowered.reduce((sum, g) => sum + ((g?.requested_target ?? 0) - (g?.target ?? 0)), 0);
    assert.ok(Math.abs(of("ctm_target_lowered_by_sum") - by) < 1e-6);
    assert.equal(of("ctm_refusals_total", { cause: "objective" }), refused);
    assert.equal(of("ctm_refusals_total"), refused);
    assert.equal(of("ctm_requests_total", { method: "Classify", status: "RESOURCE_EXHAUSTED" }), refused);
    assert.equal(of("ctm_requests_total", { method: "Classify", status: "OK" }), answered.length);
  });

  it("brings the effective target back up once the burst is over", async () => {
    const lowering = async () => metricValue(await t.metrics(), "ctm_target_lowering", { model: MAZE });
    // It holds for a second after the arrivals stop, then comes back up by itself, without a request.
    for (let waited = 0; (await lowering()) > 0 && waited < 20_000; waited += 100) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(await lowering(), 0, "the lowering is back at 0");
    const alone = await t.client.classify(request(0, true));
    assert.equal(alone.guarantee?.lowered_by_load, false);
    assert.equal(alone.guarantee?.target, ladder.top.target);
    assert.equal(alone.threshold_used, ladder.top.threshold);
  });
});
