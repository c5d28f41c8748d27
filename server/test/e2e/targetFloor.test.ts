/**
 * The contract of a floor: a request may give min_target_accuracy (min_target_consistency) beside its
 * target, the server may serve it anywhere between the two and never below, and every answer says what
 * it was served at, the guarantee that holds for it and that load lowered it, over ctm.v1 (unary and
 * stream), the Open Inference Protocol (gRPC and REST) and the playground's JSON API alike.
 *
 * A latency objective of 1 ms lowers every flexible request as far as its floor allows once the server
 * has measured a tick run (no full-depth run of this model fits in 1 ms), without refusing anything
 * (a request that would not wait is never refused), so what each transport says can be checked without
 * racing a burst; overload.test-style bursts are targetLowering.test.ts's.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { createOipClient } from "../../../tools/harness/index.ts";
import {
  failure,
  MODEL_NAME,
  metricValue,
  modelDir,
  REPO,
  type Sample,
  samples,
  startTestServer,
  type TestServer,
} from "../../../tools/harness/testServer.ts";
import type {
  ClassifyRequestMessage,
  ClassifyResponseMessage,
  GuaranteeMessage,
  HaltPolicyMessage,
  TickUpdateMessage,
} from "../../src/transport/ctmV1/ctmProtocol.ts";
import type { InferParameterMessage } from "../../src/transport/oip/oipProtocol.ts";
import { type CertifiedLadder, certifiedLadder, isCertified } from "../support/certifiedLadder.ts";

const CONFIDENCE = 0.95;

describe("a floor beside the target", () => {
  let t: TestServer;
  let ladder: CertifiedLadder;
  let sample: Sample;
  let flexible: HaltPolicyMessage;

  before(async () => {
    t = await startTestServer({ latencyObjectiveMs: 1, http: { host: "127.0.0.1", port: 0 } });
    ladder = certifiedLadder(await t.client.getModel(MODEL_NAME), "accuracy", CONFIDENCE);
    sample = samples()[3] as Sample;
    flexible = { target_accuracy: ladder.top.target, min_target_accuracy: ladder.floor };
    // The controller plans with tick runs it has seen (the first at a batch size only plans memory): one
    // full-depth request measures them, where a default one may halt at its first tick.
    await t.client.classify({
      model: MODEL_NAME,
      image: { data: sample.png },
      halt_policy: { certainty_threshold: 1 },
    });
  });
  after(() => t.close());

  const request = (halt_policy: HaltPolicyMessage): ClassifyRequestMessage => ({
    model: MODEL_NAME,
    image: { data: sample.png },
    halt_policy,
  });

  /** What a lowered answer must say: the deepest rung, certified, and what was asked. */
  const assertLowered = (g: GuaranteeMessage | null, threshold: number) => {
    assert.ok(g, "a target request is answered with its guarantee");
    assert.equal(g.lowered_by_load, true);
    assert.equal(g.target, ladder.deepest.target);
    assert.equal(g.threshold, ladder.deepest.threshold);
    assert.equal(threshold, g.threshold, "threshold_used is the threshold it was served at");
    assert.ok(g.target >= ladder.floor, `served at ${g.target}, below the floor ${ladder.floor}`);
    assert.ok(isCertified(ladder, g.target, g.threshold), "the guarantee stated is a certified one");
    assert.equal(g.met, true);
    assert.equal(g.certified_target, g.target);
    assert.equal(g.requested_target, ladder.top.target);
    assert.equal(g.requested_threshold, ladder.top.threshold);
    assert.equal(g.min_target, ladder.floor);
    assert.equal(g.signal, ladder.signal);
  };

  it("ctm.v1 Classify: served at the deepest certified rung at or above the floor, and says so", async () => {
    const response = await t.client.classify(request(flexible));
    assertLowered(response.guarantee, response.threshold_used);
    // The applied policy is what applied: the served target, and the floor it was allowed.
    assert.equal(response.applied_policy.target_accuracy, ladder.deepest.target);
    assert.equal(response.applied_policy.min_target_accuracy, ladder.floor);
    assert.equal(
      response.applied_policy.certainty_threshold || response.applied_policy.halt_threshold,
      ladder.deepest.threshold,
    );
  });

  it("ctm.v1 ClassifyStream: the final message's result says the same", async () => {
    const messages = await t.client.collect(request(flexible));
    const final = messages.at(-1) as TickUpdateMessage;
    assert.equal(final.final, true);
    const result = final.result as ClassifyResponseMessage;
    assertLowered(result.guarantee, result.threshold_used);
  });

  it("a request without a floor is never lowered, under the same objective", async () => {
    const response = await t.client.classify(request({ target_accuracy: ladder.top.target }));
    const g = response.guarantee as GuaranteeMessage;
    assert.equal(g.lowered_by_load, false);
    assert.equal(g.target, ladder.top.target);
    assert.equal(g.requested_target, ladder.top.target);
    assert.equal(g.min_target, 0);
    assert.equal(response.threshold_used, ladder.top.threshold);
    // Nor is a floor equal to the target, nor a threshold request.
    const pinned = await t.client.classify(
      request({ target_accuracy: ladder.top.target, min_target_accuracy: ladder.top.target }),
    );
    assert.equal(pinned.guarantee?.lowered_by_load, false);
    assert.equal(pinned.threshold_used, ladder.top.threshold);
    const threshold = await t.client.classify(request({ certainty_threshold: 0.9 }));
    assert.equal(threshold.threshold_used, 0.9);
    assert.equal(threshold.guarantee, null);
  });

  it("the Open Inference Protocol over gRPC: min_target_accuracy in, the guarantee's parameters out", async () => {
    const client = createOipClient(t.address);
    const infer = (parameters: Record<string, InferParameterMessage>) =>
      client.ModelInfer({
        model_name: MODEL_NAME,
        inputs: [{ name: "image", datatype: "BYTES", shape: [1, 1], contents: { bytes_contents: [sample.png] } }],
        parameters,
      });
    try {
      const { parameters } = await infer({
        target_accuracy: { double_param: ladder.top.target },
        min_target_accuracy: { double_param: ladder.floor },
      });
      assert.equal(parameters.guarantee_lowered_by_load?.bool_param, true);
      assert.equal(parameters.guarantee_target?.double_param, ladder.deepest.target);
      assert.equal(parameters.guarantee_requested_target?.double_param, ladder.top.target);
      assert.equal(parameters.guarantee_requested_threshold?.double_param, ladder.top.threshold);
      assert.equal(parameters.guarantee_min_target?.double_param, ladder.floor);
      assert.equal(parameters.guarantee_met?.bool_param, true);
      assert.equal(parameters.threshold_used?.double_param, ladder.deepest.threshold);
      assert.equal(parameters.target_accuracy?.double_param, ladder.deepest.target);
      assert.equal(parameters.min_target_accuracy?.double_param, ladder.floor);
      const fixed = await infer({ target_accuracy: { double_param: ladder.top.target } });
      assert.equal(fixed.parameters.guarantee_lowered_by_load?.bool_param, false);
      assert.equal(fixed.parameters.threshold_used?.double_param, ladder.top.threshold);
      const refused = await failure(infer({ min_target_accuracy: { double_param: ladder.floor } }));
      assert.equal(refused.code, grpc.status.INVALID_ARGUMENT);
      assert.match(
        refused.details,
        /^parameters\.min_target_accuracy \([\d.]+\) is the floor of parameters\.target_accuracy and applies only with it$/,
      );
    } finally {
      client.close();
    }
  });

  it("the Open Inference Protocol over REST and the playground's JSON API say the same", async () => {
    const base = `http://127.0.0.1:${t.server.httpPort}`;
    const rest = await fetch(`${base}/v2/models/${MODEL_NAME}/infer`, {
      method: "POST",
      body: JSON.stringify({
        parameters: { target_accuracy: ladder.top.target, min_target_accuracy: ladder.floor },
        inputs: [{ name: "image", datatype: "BYTES", shape: [1, 1], data: [{ b64: sample.png.toString("base64") }] }],
      }),
    });
    const text = await rest.clone().text();
    assert.equal(rest.status, 200, text);
    const { parameters } = (await rest.json()) as { parameters: Record<string, unknown> };
    assert.equal(parameters.guarantee_lowered_by_load, true);
    assert.equal(parameters.guarantee_target, ladder.deepest.target);
    assert.equal(parameters.guarantee_requested_target, ladder.top.target);
    assert.equal(parameters.guarantee_min_target, ladder.floor);

    const playground = await fetch(`${base}/api/classify`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: MODEL_NAME,
        image: { data: sample.png.toString("base64") },
        halt_policy: flexible,
      }),
    });
    assert.equal(playground.status, 200);
    const events = (await playground.text()).split("\n\n");
    const last = events.filter((e) => e.startsWith("event: tick")).at(-1) as string;
    const final = JSON.parse(last.slice(last.indexOf("data: ") + 6)) as TickUpdateMessage;
    const result = final.result as ClassifyResponseMessage;
    assertLowered(result.guarantee, result.threshold_used);
  });

  it("npm run classify takes the floor and prints what load did", async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        "--import",
        "tsx",
        "tools/classify/classify.ts",
        "--address",
        t.address,
        "--model",
        MODEL_NAME,
        join(modelDir(), "samples", sample.file),
        "--target-accuracy",
        String(ladder.top.target),
        "--min-target-accuracy",
        String(ladder.floor),
      ],
      { cwd: REPO, encoding: "utf8" },
    );
    assert.match(stdout, new RegExp(`guarantee met: accuracy >= ${ladder.deepest.target} with confidence 0\\.95`));
    assert.match(
      stdout,
      new RegExp(
        `lowered by load: asked for accuracy >= ${ladder.top.target} \\(threshold ${ladder.top.threshold}\\), floor ${ladder.floor}`,
      ),
    );
  });

  it("npm run loadtest sends the floor with --min-target", async () => {
    const before = metricValue(await t.metrics(), "ctm_target_lowered_by_count", { model: MODEL_NAME });
    const out = mkdtempSync(join(tmpdir(), "ctm-floor-loadtest-"));
    await promisify(execFile)(
      process.execPath,
      [
        "--import",
        "tsx",
        "loadtest/src/main.ts",
        ...["--address", t.address, "--model", MODEL_NAME, "--calls", "unary", "--concurrency", "1"],
        ...["--target-accuracy", String(ladder.top.target), "--min-target", String(ladder.floor)],
        ...["--requests", "4", "--warmup-requests", "0", "--no-plots", "--no-progress", "--out", out],
      ],
      { cwd: REPO, encoding: "utf8" },
    );
    const after = metricValue(await t.metrics(), "ctm_target_lowered_by_count", { model: MODEL_NAME });
    // The request that resolves the target's threshold before the point gives no floor; the point's 4 do.
    assert.equal(after - before, 4);
  });

  it("refuses a floor that is not a floor, naming the field and the bound", async () => {
    const cases: [HaltPolicyMessage, RegExp][] = [
      [
        { min_target_accuracy: 0.8 },
        /^halt_policy\.min_target_accuracy \(0\.8\) is the floor of halt_policy\.target_accuracy and applies only with it$/,
      ],
      [
        { target_consistency: 0.9, min_target_accuracy: 0.8 },
        /^halt_policy\.min_target_accuracy \(0\.8\) is the floor of halt_policy\.target_accuracy and applies only with it; this request sets halt_policy\.target_consistency$/,
      ],
      [
        { target_accuracy: 0.9, min_target_accuracy: 0.95 },
        /^halt_policy\.min_target_accuracy must be in \(0, target_accuracy = 0\.9\], got 0\.95$/,
      ],
      [
        { target_accuracy: 0.9, min_target_accuracy: -0.5 },
        /^halt_policy\.min_target_accuracy must be in \(0, target_accuracy = 0\.9\], got -0\.5$/,
      ],
      [
        { target_accuracy: 0.9, min_target_accuracy: 0.8, min_target_consistency: 0.8 },
        /^set at most one of halt_policy\.min_target_accuracy \(0\.8\) and halt_policy\.min_target_consistency \(0\.8\)$/,
      ],
      [
        { certainty_threshold: 0.9, min_target_consistency: 0.8 },
        /^halt_policy\.min_target_consistency \(0\.8\) is the floor of halt_policy\.target_consistency and applies only with it$/,
      ],
    ];
    for (const [policy, message] of cases) {
      const error = await failure(t.client.classify(request(policy)));
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT, JSON.stringify(policy));
      assert.match(error.details, message);
    }
  });

  it("counts what the clients saw: lowered answers, served targets, and no refusals", async () => {
    const before = await t.metrics();
    const lowered = await Promise.all([1, 2, 3].map(() => t.client.classify(request(flexible))));
    const fixed = await t.client.classify(
      request({ target_accuracy: ladder.top.target, min_target_accuracy: ladder.top.target }),
    );
    const after = await t.metrics();
    const delta = (name: string) =>
      metricValue(after, name, { model: MODEL_NAME }) - metricValue(before, name, { model: MODEL_NAME });
    assert.equal(delta("ctm_target_lowered_by_count"), lowered.filter((r) => r.guarantee?.lowered_by_load).length);
    assert.equal(delta("ctm_target_lowered_by_count"), 3);
    assert.ok(
      Math.abs(delta("ctm_target_lowered_by_sum") - 3 * (ladder.top.target - ladder.deepest.target)) < 1e-9,
      "by how much",
    );
    assert.equal(delta("ctm_served_target_count"), 4, "every answer that gave a floor, lowered or not");
    const served = [...lowered, fixed].reduce((sum, r) => sum + (r.guarantee?.target ?? 0), 0);
    assert.ok(Math.abs(delta("ctm_served_target_sum") - served) < 1e-9);
    assert.equal(metricValue(after, "ctm_refusals_total", { model: MODEL_NAME }), 0);
    const lowering = metricValue(after, "ctm_target_lowering", { model: MODEL_NAME });
    assert.ok(Math.abs(lowering - (ladder.top.target - ladder.deepest.target)) < 1e-9, `lowering ${lowering}`);
    assert.ok(metricValue(after, "ctm_capacity_ticks_per_second", { model: MODEL_NAME }) > 0);
  });
});

describe("a floor with the controller off", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.close());

  it("is accepted and stated, and never lowered: without --latency-objective-ms the server queues as before", async () => {
    const ladder = certifiedLadder(await t.client.getModel(MODEL_NAME), "accuracy", CONFIDENCE);
    const png = (samples()[3] as Sample).png;
    const responses = await Promise.all(
      Array.from({ length: 12 }, () =>
        t.client.classify({
          model: MODEL_NAME,
          image: { data: png },
          halt_policy: { target_accuracy: ladder.top.target, min_target_accuracy: ladder.floor },
        }),
      ),
    );
    for (const response of responses) {
      assert.equal(response.guarantee?.lowered_by_load, false);
      assert.equal(response.guarantee?.min_target, ladder.floor);
      assert.equal(response.threshold_used, ladder.top.threshold);
    }
    assert.equal(metricValue(await t.metrics(), "ctm_target_lowering", { model: MODEL_NAME }), 0);
  });
});
