/**
 * Halting semantics end to end. Each input's full trace is read once; every policy's expected outcome
 * is then derived from that trace with the documented rule and compared with what the server decides
 * on its own, on every signal the shipped model has (haltSignal.test.ts holds the halt signal to the
 * same rule on a model with a halting head whatever is shipped).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { MODEL_NAME, samples, startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";
import type { HaltSignal } from "../../src/model/calibration.ts";
import {
  type ClassifyRequestMessage,
  type ClassifyResponseMessage,
  HALT_SIGNAL_NAMES,
  type HaltPolicyMessage,
  type ModelInfoMessage,
  type TickUpdateMessage,
} from "../../src/transport/ctmV1/ctmProtocol.ts";
import { type Expected, expected, type Rule, signalOf, thresholdsBetween } from "../support/haltingRule.ts";

describe("halting", () => {
  let t: TestServer;
  let model: ModelInfoMessage;
  const inputs: { name: string; request: ClassifyRequestMessage; trace: TickUpdateMessage[] }[] = [];

  before(async () => {
    t = await startTestServer();
    model = await t.client.getModel(MODEL_NAME);
    for (const sample of samples().slice(0, 6)) {
      const request: ClassifyRequestMessage = { model: MODEL_NAME, image: { data: sample.png } };
      const full = { min_ticks: model.trained_ticks, max_ticks: model.trained_ticks };
      const trace = await t.client.collect({ ...request, halt_policy: full });
      inputs.push({ name: sample.file, request, trace });
    }
  });
  after(() => t.close());

  async function check(
    input: (typeof inputs)[number],
    policy: HaltPolicyMessage,
    want: Expected,
  ): Promise<ClassifyResponseMessage> {
    const response = await t.client.classify({ ...input.request, halt_policy: policy });
    const context = `${input.name} ${JSON.stringify(policy)}`;
    assert.equal(response.halt_reason, want.reason, context);
    assert.equal(response.ticks_used, want.ticksUsed, context);
    assert.equal(response.answer_tick, want.answerTick, context);
    const answer = input.trace[want.answerTick - 1] as TickUpdateMessage;
    assert.equal(response.top_k[0]?.index, answer.top_k[0]?.index, context);
    assert.ok(Math.abs(response.certainty - answer.certainty) < 1e-5, context);
    assert.equal(response.halt, answer.halt, context);
    return response;
  }

  /** The request for a rule: its threshold in the field of its signal. */
  const asPolicy = (rule: Rule): HaltPolicyMessage => ({
    [rule.signal === "halt" ? "halt_threshold" : "certainty_threshold"]: rule.threshold,
    min_ticks: rule.min_ticks,
    max_ticks: rule.max_ticks,
    patience: rule.patience,
  });
  const signals = () =>
    model.halt_signals.map((name): HaltSignal => (name === "HALT_SIGNAL_HALT" ? "halt" : "certainty"));

  it("halts at the first tick whose signal reaches the threshold, on every signal the model has", async () => {
    assert.ok(signals().includes("certainty"));
    for (const signal of signals()) {
      for (const input of inputs) {
        for (const threshold of thresholdsBetween(input.trace, signal)) {
          const rule = { signal, threshold, min_ticks: 1, max_ticks: model.trained_ticks, patience: 0 };
          const response = await check(input, asPolicy(rule), expected(input.trace, rule));
          assert.equal(response.threshold_used, threshold);
          assert.equal(response.halt_signal, HALT_SIGNAL_NAMES[signal]);
        }
      }
    }
  });

  it("never halts on the threshold before min_ticks", async () => {
    for (const input of inputs) {
      const threshold = Math.min(...input.trace.map((m) => m.certainty)) / 2;
      const policy = { certainty_threshold: threshold, min_ticks: 7, max_ticks: model.trained_ticks, patience: 0 };
      await check(input, policy, { reason: "HALT_REASON_THRESHOLD", ticksUsed: 7, answerTick: 7 });
    }
  });

  it("stops at max_ticks with the signal's best tick when the threshold is never reached", async () => {
    const maxTicks = 9;
    for (const signal of signals()) {
      // An input whose signal comes within 1e-3 of 1 in its first ticks has no threshold it never reaches;
      // the others are checked, and there must be some, or this test would pass having checked nothing.
      let checked = 0;
      for (const input of inputs) {
        const unreachable = Math.max(...input.trace.slice(0, maxTicks).map((m) => signalOf(m, signal))) + 1e-3;
        if (unreachable > 1) continue;
        const rule = { signal, threshold: unreachable, min_ticks: 1, max_ticks: maxTicks, patience: 0 };
        await check(input, asPolicy(rule), expected(input.trace, rule));
        checked++;
      }
      assert.ok(checked >= 1, `no input leaves a threshold on ${signal} unreached in ${maxTicks} ticks`);
    }
  });

  it("stops when the top class has not changed for `patience` ticks", async () => {
    for (const input of inputs) {
      for (const patience of [2, 4, 8]) {
        const rule = {
          signal: "certainty" as const,
          threshold: 1,
          min_ticks: 3,
          max_ticks: model.trained_ticks,
          patience,
        };
        await check(input, asPolicy(rule), expected(input.trace, rule));
      }
    }
  });

  it("resolves a target accuracy to the threshold its calibration certifies on the model's best signal", async () => {
    // The best signal: halt for a model whose calibration certifies on its halting head, else certainty.
    const signal: HaltSignal = model.target_signal === "HALT_SIGNAL_HALT" ? "halt" : "certainty";
    assert.equal(model.target_signal, model.halt_signals.at(-1));
    const calibrated = model.calibration?.signals.find((s) => s.signal === model.target_signal);
    const certified = (calibrated?.certified ?? []).filter((p) => p.kind === "accuracy" && p.confidence === 0.95);
    assert.ok(certified.length >= 4, `the shipped model's calibration certifies accuracy targets at 0.95 on ${signal}`);
    for (const point of certified.filter((_, i) => i % 4 === 0)) {
      for (const input of inputs.slice(0, 2)) {
        const rule = { signal, threshold: point.threshold, min_ticks: 1, max_ticks: model.trained_ticks, patience: 0 };
        const response = await check(input, { target_accuracy: point.target }, expected(input.trace, rule));
        assert.equal(response.threshold_used, point.threshold);
        assert.equal(response.halt_signal, model.target_signal);
        assert.equal(response.applied_policy.target_accuracy, point.target);
        assert.equal(response.guarantee?.met, true);
        assert.equal(response.guarantee?.signal, model.target_signal);
      }
    }
  });

  it("applies the documented defaults when the request sets no policy", async () => {
    const input = inputs[0] as (typeof inputs)[number];
    const rule = {
      signal: "certainty" as const,
      threshold: 0.9,
      min_ticks: 1,
      max_ticks: model.trained_ticks,
      patience: 0,
    };
    const response = await check(input, {}, expected(input.trace, rule));
    assert.equal(response.threshold_used, 0.9);
    assert.equal(response.halt_signal, "HALT_SIGNAL_CERTAINTY");
    assert.equal(model.default_policy.halt_signal, "HALT_SIGNAL_CERTAINTY");
    assert.equal(response.applied_policy.max_ticks, model.trained_ticks);
    assert.deepEqual(model.default_policy.certainty_threshold, 0.9);
  });

  it("halts with DEADLINE and the best answer so far once deadline_ms has passed", async () => {
    const input = inputs[0] as (typeof inputs)[number];
    // A deadline that passes before the first tick is DEADLINE_EXCEEDED instead (deadlines.test.ts),
    // and how many ticks fit in a few milliseconds depends on the machine and its load: a whole run
    // takes a few ms here, so the budget grows a millisecond at a time, each tried a few times (its
    // timing jitters), until one passes mid-run; every answer on the way must be a documented outcome.
    let halted: ClassifyResponseMessage | undefined;
    const budgets = Array.from({ length: 64 }, (_, i) => 1 + Math.floor(i / 4));
    for (const deadline of budgets) {
      if (halted) break;
      const policy = { min_ticks: model.trained_ticks, max_ticks: model.trained_ticks, deadline_ms: deadline };
      const response = await t.client.classify({ ...input.request, halt_policy: policy }).catch((error) => {
        assert.equal(error.code, status.DEADLINE_EXCEEDED, error.details);
        assert.match(error.details, /^halt_policy\.deadline_ms \(\d+ ms\) passed before the request's first tick/);
        return undefined;
      });
      if (response?.halt_reason === "HALT_REASON_DEADLINE") halted = response;
      // Or the budget outlasted the run: every tick, halted by the threshold or max_ticks.
      else if (response) assert.equal(response.ticks_used, model.trained_ticks, response.halt_reason);
    }
    assert.ok(halted, "some deadline passed mid-run");
    assert.ok(halted.ticks_used >= 1 && halted.ticks_used < model.trained_ticks, `ticks used: ${halted.ticks_used}`);
    const prefix = input.trace.slice(0, halted.ticks_used).map((m) => m.certainty);
    assert.equal(halted.answer_tick, prefix.indexOf(Math.max(...prefix)) + 1);
  });

  it("streams the same decision, flagging the halting tick as final", async () => {
    const input = inputs[1] as (typeof inputs)[number];
    const [threshold] = thresholdsBetween(input.trace);
    assert.ok(threshold !== undefined);
    const rule = { signal: "certainty" as const, threshold, min_ticks: 1, max_ticks: model.trained_ticks, patience: 0 };
    const want = expected(input.trace, rule);
    const messages = await t.client.collect({ ...input.request, halt_policy: asPolicy(rule) });
    assert.equal(messages.length, want.ticksUsed);
    const last = messages.at(-1) as TickUpdateMessage;
    assert.ok(last.final && messages.slice(0, -1).every((m) => !m.final));
    assert.equal(last.halt_reason, want.reason);
    assert.equal(last.result?.answer_tick, want.answerTick);
    assert.equal(last.result?.ticks_used, want.ticksUsed);
  });
});
