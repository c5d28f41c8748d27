/**
 * Golden values cross the language boundary: training/ writes each fixture input with PyTorch's
 * per-tick logits, certainty, probabilities and (for a model with a halting head) halt; the server,
 * through gRPC, must reproduce them.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  type GoldenCase,
  readModelJson,
  startTestServer,
  type TestServer,
  tensorRequest,
} from "../../../tools/harness/testServer.ts";
import type { TickUpdateMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";

const TOLERANCE = 1e-4;

function maxDifference(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++)
    worst = Math.max(worst, Math.abs((actual[i] as number) - (expected[i] as number)));
  return worst;
}

function checkTicks(ticks: TickUpdateMessage[], golden: GoldenCase, label: string) {
  assert.equal(ticks.length, golden.logits.length, `${label}: one message per tick`);
  ticks.forEach((tick, i) => {
    assert.equal(tick.tick, i + 1);
    const logits = maxDifference(tick.logits, golden.logits[i] as number[]);
    assert.ok(logits <= TOLERANCE, `${label} tick ${i + 1}: logits differ by ${logits}`);
    const certainty = Math.abs(tick.certainty - (golden.certainty[i] as number));
    assert.ok(certainty <= TOLERANCE, `${label} tick ${i + 1}: certainty differs by ${certainty}`);
    // A model with a halting head has golden halt values, and streams them; one without streams none.
    if (golden.halt) {
      const halt = Math.abs((tick.halt ?? Number.NaN) - (golden.halt[i] as number));
      assert.ok(halt <= TOLERANCE, `${label} tick ${i + 1}: halt differs by ${halt}`);
    } else {
      assert.equal(tick.halt, undefined, `${label} tick ${i + 1}: a model without a halting head streams no halt`);
    }
    const probabilities = golden.probabilities[i] as number[];
    for (const score of tick.top_k) {
      const diff = Math.abs(score.probability - (probabilities[score.index] as number));
      assert.ok(diff <= TOLERANCE, `${label} tick ${i + 1}: p(${score.label}) differs by ${diff}`);
    }
  });
}

describe("per-tick outputs match the export's golden fixtures", () => {
  const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.close());

  it("has fixtures to compare against", () => {
    assert.ok(golden.cases.length > 0);
  });

  it("streams every tick's logits, certainty and probabilities within 1e-4", async () => {
    for (const [i, golden_] of golden.cases.entries()) {
      // min_ticks = max_ticks: run every tick the fixture has, whatever the certainty does.
      const ticks = await t.client.collect({
        ...tensorRequest(golden_, { min_ticks: golden.ticks, max_ticks: golden.ticks }),
        top_k: 10,
      });
      checkTicks(ticks, golden_, `case ${i}`);
      assert.equal(ticks.filter((m) => m.final).length, 1);
      assert.ok(ticks.at(-1)?.final, "the last message is the final one");
    }
  });

  it("returns the same ticks as a unary trace", async () => {
    const golden_ = golden.cases[0] as GoldenCase;
    const response = await t.client.classify({
      ...tensorRequest(golden_, { min_ticks: golden.ticks, max_ticks: golden.ticks }),
      include_trace: true,
      top_k: 10,
    });
    checkTicks(response.trace, golden_, "unary");
    assert.ok(response.trace.every((m) => !m.final && m.result === null));
  });
});
