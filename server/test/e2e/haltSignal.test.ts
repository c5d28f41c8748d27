/**
 * The halt signal end to end, on a real model with a halting head (server/test/fixtures/models) and
 * the same model without one: onnxruntime-node reproduces the export's golden halt values through
 * gRPC; a request halts on halt exactly as the rule says; a target is certified on halt and says so;
 * a model without a head refuses the signal by name; the Open Inference Protocol and the playground's
 * HTTP API carry the signal too.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  HALTING_MODEL,
  HEADLESS_MODEL,
  haltingGolden,
  haltingModelsDir,
  haltingSamples,
} from "../../../tools/harness/haltingModel.ts";
import { createOipClient, type OipClient } from "../../../tools/harness/index.ts";
import { failure, type GoldenCase, startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";
import type { ClassifyRequestMessage, TickUpdateMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";
import type { InferParameterMessage } from "../../src/transport/oip/oipProtocol.ts";
import { expected, type Rule, signalOf, thresholdsBetween } from "../support/haltingRule.ts";

const TOLERANCE = 1e-4;
const golden = haltingGolden();
const T = golden.ticks;

const tensorOf = (c: GoldenCase) => ({ shape: c.input_shape, values: c.input });
const request = (model: string, c: GoldenCase, halt_policy: ClassifyRequestMessage["halt_policy"] = {}) => ({
  model,
  tensor: tensorOf(c),
  halt_policy,
});
const fullRun = { min_ticks: T, max_ticks: T };

describe("the halt signal", () => {
  let t: TestServer;
  /** Every golden case's full trace from the halting model. */
  let traces: TickUpdateMessage[][];

  before(async () => {
    t = await startTestServer({ modelsDir: haltingModelsDir(), http: { host: "127.0.0.1", port: 0 } });
    traces = [];
    for (const c of golden.cases) traces.push(await t.client.collect(request(HALTING_MODEL, c, fullRun)));
  });
  after(() => t.close());

  it("streams every tick's halt value as the export computed it (golden.json, within 1e-4)", () => {
    assert.ok(golden.cases.length > 0);
    golden.cases.forEach((c, i) => {
      const trace = traces[i] as TickUpdateMessage[];
      assert.ok(c.halt, "the fixture's golden values have halt");
      assert.equal(trace.length, T);
      trace.forEach((tick, tt) => {
        assert.ok(tick.halt !== undefined, `case ${i} tick ${tick.tick} carries halt`);
        const difference = Math.abs(tick.halt - (c.halt?.[tt] as number));
        assert.ok(difference <= TOLERANCE, `case ${i} tick ${tick.tick}: halt differs by ${difference}`);
        assert.ok(Math.abs(tick.certainty - (c.certainty[tt] as number)) <= TOLERANCE);
        assert.equal(tick.halt_signal, "HALT_SIGNAL_CERTAINTY");
      });
    });
  });

  it("halts at the first tick whose halt reaches halt_threshold, and answers with that tick", async () => {
    let checked = 0;
    for (const [i, c] of golden.cases.entries()) {
      const trace = traces[i] as TickUpdateMessage[];
      for (const threshold of thresholdsBetween(trace, "halt")) {
        const rule: Rule = { signal: "halt", threshold, min_ticks: 1, max_ticks: T, patience: 0 };
        const want = expected(trace, rule);
        const response = await t.client.classify(request(HALTING_MODEL, c, { halt_threshold: threshold }));
        const context = `case ${i} halt_threshold ${threshold}`;
        assert.equal(response.halt_reason, want.reason, context);
        assert.equal(response.ticks_used, want.ticksUsed, context);
        assert.equal(response.answer_tick, want.answerTick, context);
        assert.equal(response.halt, trace[want.answerTick - 1]?.halt, context);
        assert.equal(response.certainty, trace[want.answerTick - 1]?.certainty, context);
        assert.equal(response.halt_signal, "HALT_SIGNAL_HALT");
        assert.equal(response.threshold_used, threshold);
        assert.equal(response.applied_policy.halt_signal, "HALT_SIGNAL_HALT");
        assert.equal(response.applied_policy.halt_threshold, threshold);
        assert.equal(response.applied_policy.certainty_threshold, 0);
        checked++;
      }
    }
    assert.ok(checked >= 3, `${checked} thresholds checked`);
  });

  it("answers with the earliest tick of the highest halt when no tick reaches the threshold", async () => {
    // Case 0's halt peaks mid-run and falls after: the answer is that tick, not the last, nor certainty's best.
    for (const [i, c] of golden.cases.entries()) {
      const trace = traces[i] as TickUpdateMessage[];
      const halts = trace.map((tick) => signalOf(tick, "halt"));
      const unreachable = Math.max(...halts) + 1e-3;
      if (unreachable > 1) continue;
      const response = await t.client.classify(
        request(HALTING_MODEL, c, { halt_signal: "HALT_SIGNAL_HALT", halt_threshold: unreachable }),
      );
      assert.equal(response.halt_reason, "HALT_REASON_MAX_TICKS");
      assert.equal(response.answer_tick, halts.indexOf(Math.max(...halts)) + 1, `case ${i}`);
    }
    const peaked = traces[0]?.map((tick) => signalOf(tick, "halt")) ?? [];
    assert.ok(peaked.indexOf(Math.max(...peaked)) < T - 1, "case 0's halt peaks before the last tick");
  });

  it("streams the signal halted on with every tick", async () => {
    const [c] = golden.cases;
    assert.ok(c);
    const ticks = await t.client.collect(request(HALTING_MODEL, c, { halt_signal: "HALT_SIGNAL_HALT" }));
    assert.ok(ticks.every((tick) => tick.halt_signal === "HALT_SIGNAL_HALT" && tick.halt !== undefined));
    const last = ticks.at(-1);
    assert.equal(last?.result?.halt_signal, "HALT_SIGNAL_HALT");
    // halt_signal alone halts on halt at the default threshold 0.9.
    assert.equal(last?.result?.threshold_used, 0.9);
  });

  it("certifies a target on halt when the model has a head and a halt calibration, and says so", async () => {
    const model = await t.client.getModel(HALTING_MODEL);
    assert.deepEqual(model.halt_signals, ["HALT_SIGNAL_CERTAINTY", "HALT_SIGNAL_HALT"]);
    assert.equal(model.target_signal, "HALT_SIGNAL_HALT");
    assert.equal(model.calibration?.schema_version, 3);
    const [certainty, halt] = model.calibration?.signals ?? [];
    assert.equal(certainty?.signal, "HALT_SIGNAL_CERTAINTY");
    assert.equal(halt?.signal, "HALT_SIGNAL_HALT");
    assert.deepEqual(model.calibration?.certified, certainty?.certified, "the old fields are certainty's");
    const point = halt?.certified.find((p) => p.kind === "accuracy" && p.confidence === 0.95 && p.target === 0.8);
    const certaintyPoint = certainty?.certified.find(
      (p) => p.kind === "accuracy" && p.confidence === 0.95 && p.target === 0.8,
    );
    assert.ok(point && certaintyPoint, "both signals certify accuracy 0.8 at 0.95");
    for (const [i, c] of golden.cases.entries()) {
      const response = await t.client.classify(request(HALTING_MODEL, c, { target_accuracy: 0.8 }));
      assert.equal(response.halt_signal, "HALT_SIGNAL_HALT");
      assert.equal(response.threshold_used, point.threshold);
      assert.equal(response.guarantee?.signal, "HALT_SIGNAL_HALT");
      assert.equal(response.guarantee?.met, true);
      assert.equal(response.guarantee?.risk_bound, point.risk_bound);
      const rule: Rule = { signal: "halt", threshold: point.threshold, min_ticks: 1, max_ticks: T, patience: 0 };
      assert.equal(response.answer_tick, expected(traces[i] as TickUpdateMessage[], rule).answerTick);
      // Named, certainty is certified on its own thresholds.
      const onCertainty = await t.client.classify(
        request(HALTING_MODEL, c, { target_accuracy: 0.8, halt_signal: "HALT_SIGNAL_CERTAINTY" }),
      );
      assert.equal(onCertainty.halt_signal, "HALT_SIGNAL_CERTAINTY");
      assert.equal(onCertainty.threshold_used, certaintyPoint.threshold);
      assert.equal(onCertainty.guarantee?.signal, "HALT_SIGNAL_CERTAINTY");
    }
  });

  it("refuses contradictory thresholds, naming both fields", async () => {
    const [c] = golden.cases as [GoldenCase];
    const both = await failure(
      t.client.classify(request(HALTING_MODEL, c, { halt_signal: "HALT_SIGNAL_HALT", certainty_threshold: 0.5 })),
    );
    assert.equal(both.code, grpc.status.INVALID_ARGUMENT);
    assert.match(both.details, /halt_policy\.certainty_threshold \(0\.5\) .* but halt_policy\.halt_signal is halt/);
    const two = await failure(
      t.client.classify(request(HALTING_MODEL, c, { certainty_threshold: 0.5, halt_threshold: 0.5 })),
    );
    assert.equal(two.code, grpc.status.INVALID_ARGUMENT);
    assert.match(
      two.details,
      /set at most one of halt_policy\.certainty_threshold \(0\.5\) and halt_policy\.halt_threshold/,
    );
  });

  it("on a model without a halting head: no halt value, certainty only, and the halt signal refused by name", async () => {
    const [c] = golden.cases as [GoldenCase];
    const model = await t.client.getModel(HEADLESS_MODEL);
    assert.deepEqual(model.halt_signals, ["HALT_SIGNAL_CERTAINTY"]);
    assert.equal(model.target_signal, "HALT_SIGNAL_CERTAINTY");
    assert.equal(model.calibration?.schema_version, 2, "a schema_version 2 calibration serves");
    assert.deepEqual(
      model.calibration?.signals.map((s) => s.signal),
      ["HALT_SIGNAL_CERTAINTY"],
    );
    const ticks = await t.client.collect(request(HEADLESS_MODEL, c, fullRun));
    assert.equal(ticks.length, T);
    assert.ok(ticks.every((tick) => tick.halt === undefined && tick.halt_signal === "HALT_SIGNAL_CERTAINTY"));
    assert.equal(ticks.at(-1)?.result?.halt, undefined);
    const target = await t.client.classify(request(HEADLESS_MODEL, c, { target_accuracy: 0.8 }));
    assert.equal(target.halt_signal, "HALT_SIGNAL_CERTAINTY");
    assert.equal(target.guarantee?.signal, "HALT_SIGNAL_CERTAINTY");
    for (const [policy, field] of [
      [{ halt_signal: "HALT_SIGNAL_HALT" as const }, "halt_policy.halt_signal"],
      [{ halt_threshold: 0.9 }, "halt_policy.halt_threshold"],
      [{ halt_signal: "HALT_SIGNAL_HALT" as const, target_accuracy: 0.8 }, "halt_policy.halt_signal"],
    ] as const) {
      const refused = await failure(t.client.classify(request(HEADLESS_MODEL, c, policy)));
      assert.equal(refused.code, grpc.status.INVALID_ARGUMENT);
      assert.equal(
        refused.details,
        `${field}: model ${HEADLESS_MODEL} has no halting head (its manifest declares no outputs.halt), so it can halt on certainty only; use halt_policy.certainty_threshold or a target, or a model exported with a halting head`,
      );
    }
  });

  describe("over the Open Inference Protocol", () => {
    type Parameters = Record<string, InferParameterMessage>;
    interface InferResponse {
      outputs: { name: string; datatype: string; shape: number[] }[];
      raw_output_contents: Buffer[];
      parameters: Parameters;
    }
    let client: OipClient;
    before(() => {
      client = createOipClient(t.address);
    });
    after(() => client.close());

    const infer = (model: string, c: GoldenCase, parameters: Parameters): Promise<InferResponse> =>
      client.ModelInfer({
        model_name: model,
        inputs: [
          { name: "input", datatype: "FP32", shape: [1, ...c.input_shape], contents: { fp32_contents: c.input } },
        ],
        parameters,
      });
    const output = (response: InferResponse, name: string) => {
      const at = response.outputs.findIndex((o) => o.name === name);
      if (at < 0) return undefined;
      const raw = response.raw_output_contents[at] as Buffer;
      return Array.from(new Float32Array(Uint8Array.from(raw).buffer));
    };

    it("takes halt_signal and halt_threshold, and answers with the halt output and the signal", async () => {
      for (const [i, c] of golden.cases.entries()) {
        const trace = traces[i] as TickUpdateMessage[];
        const [threshold] = thresholdsBetween(trace, "halt");
        assert.ok(threshold !== undefined);
        const want = expected(trace, { signal: "halt", threshold, min_ticks: 1, max_ticks: T, patience: 0 });
        const response = await infer(HALTING_MODEL, c, {
          halt_signal: { string_param: "halt" },
          halt_threshold: { double_param: threshold },
        });
        const described = response.outputs.find((o) => o.name === "halt");
        assert.deepEqual([described?.datatype, described?.shape], ["FP32", [1]]);
        const [halt] = output(response, "halt") ?? [];
        assert.ok(Math.abs((halt as number) - (trace[want.answerTick - 1]?.halt as number)) <= 1e-6);
        assert.equal(response.parameters.halt_signal?.string_param, "halt");
        assert.equal(response.parameters.answer_tick?.int64_param, want.answerTick);
        assert.equal(response.parameters.threshold_used?.double_param, threshold);
      }
      const metadata = await client.ModelMetadata({ name: HALTING_MODEL });
      assert.ok(metadata.outputs.some((o) => o.name === "halt"));
    });

    it("has no halt output for a model without a head, and refuses the halt signal naming the parameter", async () => {
      const [c] = golden.cases as [GoldenCase];
      const plain = await infer(HEADLESS_MODEL, c, {});
      assert.equal(output(plain, "halt"), undefined);
      assert.equal(plain.parameters.halt_signal?.string_param, "certainty");
      const metadata = await client.ModelMetadata({ name: HEADLESS_MODEL });
      assert.ok(!metadata.outputs.some((o) => o.name === "halt"));
      const refused = await failure(infer(HEADLESS_MODEL, c, { halt_signal: { string_param: "halt" } }));
      assert.equal(refused.code, grpc.status.INVALID_ARGUMENT);
      assert.match(refused.details, /^parameters\.halt_signal: model mnist-headless has no halting head/);
      const misspelt = await failure(infer(HALTING_MODEL, c, { halt_signal: { string_param: "halting" } }));
      assert.match(
        misspelt.details,
        /^parameters\.halt_signal must be a string_param, "certainty" or "halt", got string_param "halting"$/,
      );
      const output_ = await failure(
        client.ModelInfer({
          model_name: HEADLESS_MODEL,
          inputs: [
            { name: "input", datatype: "FP32", shape: [1, ...c.input_shape], contents: { fp32_contents: c.input } },
          ],
          outputs: [{ name: "halt" }],
        }),
      );
      assert.equal(output_.code, grpc.status.INVALID_ARGUMENT);
      assert.match(output_.details, /^outputs\[0\]\.name halt: model mnist-headless has no halting head/);
    });
  });

  describe("over the playground's HTTP API", () => {
    const post = (body: unknown) =>
      fetch(`http://127.0.0.1:${t.server.httpPort}/api/classify`, { method: "POST", body: JSON.stringify(body) });
    const ticksOf = async (response: Response) =>
      (await response.text())
        .split("\n\n")
        .filter((block) => block.startsWith("event: tick"))
        .map((block) => JSON.parse(block.slice(block.indexOf("data: ") + 6)) as TickUpdateMessage);

    it("takes the signal as the proto's JSON names it and streams halt with every tick", async () => {
      const [sample] = haltingSamples();
      assert.ok(sample);
      const image = { data: sample.png.toString("base64") };
      const grpcTicks = await t.client.collect({
        model: HALTING_MODEL,
        image: { data: sample.png },
        halt_policy: fullRun,
      });
      const [threshold] = thresholdsBetween(grpcTicks, "halt");
      assert.ok(threshold !== undefined);
      const want = expected(grpcTicks, { signal: "halt", threshold, min_ticks: 1, max_ticks: T, patience: 0 });
      const response = await post({
        model: HALTING_MODEL,
        image,
        halt_policy: { halt_signal: "HALT_SIGNAL_HALT", halt_threshold: threshold },
      });
      assert.equal(response.status, 200);
      const ticks = await ticksOf(response);
      assert.equal(ticks.length, want.ticksUsed);
      ticks.forEach((tick, i) => {
        assert.ok(Math.abs((tick.halt as number) - (grpcTicks[i]?.halt as number)) <= 1e-6);
        assert.equal(tick.halt_signal, "HALT_SIGNAL_HALT");
      });
      assert.equal(ticks.at(-1)?.result?.answer_tick, want.answerTick);
      // The enum's number is its JSON form too.
      const numbered = await post({ model: HALTING_MODEL, image, halt_policy: { halt_signal: 2 } });
      assert.equal((await ticksOf(numbered)).at(-1)?.result?.halt_signal, "HALT_SIGNAL_HALT");
    });

    it("refuses the halt signal for a model without a head, and a signal that is not one, naming the field", async () => {
      const [sample] = haltingSamples();
      assert.ok(sample);
      const image = { data: sample.png.toString("base64") };
      const headless = await post({ model: HEADLESS_MODEL, image, halt_policy: { halt_signal: "HALT_SIGNAL_HALT" } });
      assert.equal(headless.status, 400);
      assert.match(
        ((await headless.json()) as { message: string }).message,
        /^halt_policy\.halt_signal: model mnist-headless has no halting head/,
      );
      const unknown = await post({ model: HALTING_MODEL, image, halt_policy: { halt_signal: "HALT" } });
      assert.equal(unknown.status, 400);
      assert.match(
        ((await unknown.json()) as { message: string }).message,
        /^halt_policy\.halt_signal must be one of HALT_SIGNAL_UNSPECIFIED, HALT_SIGNAL_CERTAINTY, HALT_SIGNAL_HALT/,
      );
    });
  });
});
