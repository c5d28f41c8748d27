/**
 * target_accuracy and target_consistency end to end: the threshold the calibration certifies on the
 * model's best signal, the guarantee in the response, "not met" (and every tick) when nothing certifies
 * the target, and the newest calibration file of a model folder winning on restart. Written against
 * whichever signal the shipped model certifies on (ModelInfo.target_signal); haltSignal.test.ts holds
 * the halt signal to it on a model with a halting head.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { asVersion2, type CalibrationDocument, certaintyBlock } from "../../../tools/harness/calibrationDocuments.ts";
import { MODEL_NAME, modelDir, samples, startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";
import type { HaltSignal } from "../../src/model/calibration.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import type {
  CertifiedTargetMessage,
  ClassifyRequestMessage,
  ModelInfoMessage,
  SignalCalibrationMessage,
  TickUpdateMessage,
} from "../../src/transport/ctmV1/ctmProtocol.ts";
import { signalOf } from "../support/haltingRule.ts";

/** A models folder whose mnist-ctm/1 links every shipped file, plus extra files written into it. */
function modelsWith(files: Record<string, unknown>): { root: string; dir: string } {
  const root = mkdtempSync(join(tmpdir(), "ctm-guarantee-"));
  const dir = join(root, MODEL_NAME, "1");
  mkdirSync(dir, { recursive: true });
  for (const name of readdirSync(modelDir())) {
    if (!(name in files)) symlinkSync(join(modelDir(), name), join(dir, name));
  }
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), JSON.stringify(content));
  return { root, dir };
}

const shippedCalibration = (): CalibrationDocument =>
  JSON.parse(readFileSync(join(modelDir(), "calibration.json"), "utf8"));

describe("guaranteed targets", () => {
  let t: TestServer;
  let model: ModelInfoMessage;
  let request: ClassifyRequestMessage;
  let trace: TickUpdateMessage[];

  before(async () => {
    t = await startTestServer();
    model = await t.client.getModel(MODEL_NAME);
    request = { model: MODEL_NAME, image: { data: (samples()[3] as { png: Buffer }).png } };
    trace = await t.client.collect({ ...request, halt_policy: { certainty_threshold: 1 } });
  });
  after(() => t.close());

  /** The calibration of the signal a target is certified on when the request names none. */
  const targetCalibration = (): SignalCalibrationMessage => {
    const found = model.calibration?.signals.find((s) => s.signal === model.target_signal);
    assert.ok(found, `GetModel lists the calibration of ${model.target_signal}`);
    return found;
  };
  const targetSignal = (): HaltSignal => (model.target_signal === "HALT_SIGNAL_HALT" ? "halt" : "certainty");

  const point = (kind: string, target: number, confidence: number): CertifiedTargetMessage => {
    const found = targetCalibration().certified.find(
      (p) => p.kind === kind && p.target === target && p.confidence === confidence,
    );
    assert.ok(found, `the shipped calibration certifies ${kind} ${target} at ${confidence} on ${model.target_signal}`);
    return found;
  };

  it("GetModel says what the calibration certifies, per signal, and where its data came from", () => {
    const calibration = model.calibration;
    assert.ok(calibration);
    assert.ok([2, 3].includes(calibration.schema_version), `schema_version ${calibration.schema_version}`);
    assert.equal(calibration.file, "calibration.json");
    assert.deepEqual(
      calibration.signals.map((s) => s.signal),
      model.target_signal === "HALT_SIGNAL_HALT"
        ? ["HALT_SIGNAL_CERTAINTY", "HALT_SIGNAL_HALT"]
        : ["HALT_SIGNAL_CERTAINTY"],
    );
    // The fields older clients read are certainty's.
    const [certainty] = calibration.signals;
    assert.deepEqual(calibration.certified, certainty?.certified);
    assert.deepEqual(calibration.thresholds, certainty?.thresholds);
    for (const signal of calibration.signals) {
      const kinds = new Set(signal.certified.map((p) => p.kind));
      assert.deepEqual([...kinds].sort(), ["accuracy", "consistency"]);
      for (const p of signal.certified) assert.ok(p.threshold > 0 && p.threshold <= 1 && p.risk_bound <= 1 - p.target);
      assert.equal(signal.accuracy_data?.kind, "labeled");
      assert.equal(signal.accuracy_data?.split, "validation");
      assert.equal(signal.accuracy_data?.count, calibration.count);
    }
  });

  it("target_accuracy gets the certified threshold and the guarantee, with the default confidence 0.95", async () => {
    const expected = point("accuracy", 0.95, 0.95);
    const response = await t.client.classify({ ...request, halt_policy: { target_accuracy: 0.95 } });
    assert.equal(response.threshold_used, expected.threshold);
    assert.equal(response.halt_signal, model.target_signal);
    assert.equal(response.applied_policy.target_confidence, 0.95);
    assert.deepEqual(response.guarantee, {
      kind: "accuracy",
      signal: model.target_signal,
      target: 0.95,
      confidence: 0.95,
      met: true,
      threshold: expected.threshold,
      calibration_count: targetCalibration().accuracy_data?.count,
      risk_bound: expected.risk_bound,
      certified_target: 0.95,
      certified_confidence: 0.95,
      note: "",
      // No floor: served as asked, never lowered.
      requested_target: 0.95,
      requested_threshold: expected.threshold,
      min_target: 0,
      lowered_by_load: false,
    });
  });

  it("target_consistency at a chosen confidence gets its own certified threshold, streamed too", async () => {
    // The highest consistency target certified at confidence 0.9, asked for a little below both.
    const certified = targetCalibration().certified.filter((p) => p.kind === "consistency" && p.confidence === 0.9);
    const expected = certified.reduce((a, b) => (b.target > a.target ? b : a));
    const wanted = Number((expected.target - 0.0004).toFixed(4));
    const policy = { target_consistency: wanted, target_confidence: 0.85 }; // served by the grid point (target, 0.9)
    const response = await t.client.classify({ ...request, halt_policy: policy });
    assert.equal(response.threshold_used, expected.threshold);
    assert.equal(response.guarantee?.kind, "consistency");
    assert.equal(response.guarantee?.met, true);
    assert.equal(response.guarantee?.target, wanted);
    assert.equal(response.guarantee?.certified_target, expected.target);
    assert.equal(response.guarantee?.certified_confidence, 0.9);
    assert.equal(response.applied_policy.target_consistency, wanted);
    const last = (await t.client.collect({ ...request, halt_policy: policy })).at(-1);
    assert.deepEqual(last?.result?.guarantee, response.guarantee);
  });

  it("an uncertifiable target runs every tick and says the guarantee was not met", async () => {
    const certified = targetCalibration().certified.filter((p) => p.kind === "accuracy");
    const beyond = Math.max(...certified.map((p) => p.target)) + 0.001;
    const response = await t.client.classify({ ...request, halt_policy: { target_accuracy: beyond } });
    assert.equal(response.threshold_used, 1);
    assert.equal(response.guarantee?.met, false);
    assert.match(
      response.guarantee?.note ?? "",
      new RegExp(`^no threshold on ${targetSignal()} certifies halt_policy\\.target_accuracy .* ran every tick`),
    );
    // Threshold 1.0 stops early only at a signal of exactly 1.
    const fullyCertain = trace.findIndex((m) => signalOf(m, targetSignal()) >= 1) + 1;
    assert.equal(response.ticks_used, fullyCertain > 0 ? fullyCertain : model.trained_ticks);
    assert.equal(response.ticks_used, trace.length);
  });

  it("leaving the calibrated rule withdraws the guarantee", async () => {
    const response = await t.client.classify({ ...request, halt_policy: { target_accuracy: 0.95, patience: 3 } });
    assert.equal(response.guarantee?.met, false);
    assert.match(response.guarantee?.note ?? "", /holds for the calibrated rule .* this request has patience 3/);
  });

  it("requests without a target carry no guarantee", async () => {
    const response = await t.client.classify({ ...request, halt_policy: { certainty_threshold: 0.9 } });
    assert.equal(response.guarantee, null);
  });
});

describe("calibration files", () => {
  it("the newest calibration-N.json wins on restart, with its data's provenance", async () => {
    const newer = shippedCalibration();
    const provenance = {
      kind: "unlabeled",
      dir: "/data/traffic",
      count: 1003,
      sha256: "f".repeat(64),
      date: "2026-12-01T10:00:00Z",
    };
    const consistency = certaintyBlock(newer).guarantees?.consistency;
    assert.ok(consistency);
    consistency.data = provenance;
    const older = shippedCalibration();
    const { root } = modelsWith({ "calibration-2.json": older, "calibration-10.json": newer });
    const t = await startTestServer({ modelsDir: root });
    try {
      const model = await t.client.getModel(MODEL_NAME);
      assert.equal(model.calibration?.file, "calibration-10.json");
      assert.deepEqual(model.calibration?.consistency_data, { ...provenance, split: "" });
      assert.equal(model.calibration?.accuracy_data?.split, "validation");
    } finally {
      await t.close();
    }
  });

  it("a schema_version 2 calibration still loads, as the certainty signal's", () => {
    const v2 = asVersion2(shippedCalibration());
    const { dir } = modelsWith({ "calibration.json": v2 });
    const calibration = loadModelFolder(dir).calibration;
    assert.equal(calibration?.schemaVersion, 2);
    assert.deepEqual(Object.keys(calibration?.signals ?? {}), ["certainty"]);
    assert.equal(calibration?.signals.certainty.accuracyFullRun, v2.accuracy_most_certain);
    assert.equal(
      calibration?.signals.certainty.guarantees.accuracy?.certified.length,
      v2.guarantees?.accuracy?.certified.length,
    );
  });

  it("a schema_version 1 calibration still loads; it certifies nothing", () => {
    const v1 = asVersion2(shippedCalibration());
    v1.schema_version = 1;
    delete v1.guarantees;
    const { dir } = modelsWith({ "calibration.json": v1 });
    const calibration = loadModelFolder(dir).calibration;
    assert.equal(calibration?.schemaVersion, 1);
    assert.deepEqual(calibration?.signals.certainty.guarantees, {});
    assert.equal(calibration?.signals.certainty.thresholds.length, v1.thresholds.length);
  });
});
