/**
 * `npm run bench:lowering -- --signal`: the requests of the benchmark halt on the signal chosen, with
 * that signal's certified targets and ladder, on a real server with the maze model (which has a halting
 * head, so both signals are certified). Before the option the requests named no signal, so they could
 * only run on the model's target signal.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { REPO, startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";
import type { ModelInfoMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { LoweringUsageError, parseLoweringOptions } from "../parts/loweringOptions.ts";
import { chooseTargets, loweringPolicies } from "../parts/loweringTargets.ts";

const MAZE = "maze-ctm";

function firstSample(): Buffer {
  const dir = join(REPO, "models", MAZE, "1", "samples");
  const [first] = JSON.parse(readFileSync(join(dir, "labels.json"), "utf8")) as { file: string }[];
  return readFileSync(join(dir, (first as { file: string }).file));
}

/** The highest accuracy target certified at 0.95 on `signal`, as GetModel reports it. */
function topCertified(model: ModelInfoMessage, signal: string) {
  const certified = model.calibration?.signals.find((s) => s.signal === signal)?.certified ?? [];
  const points = certified.filter((p) => p.kind === "accuracy" && p.confidence === 0.95);
  assert.ok(points.length > 0, `${MAZE} certifies accuracy targets on ${signal}`);
  return points.reduce((best, p) => (p.target > best.target ? p : best));
}

describe("bench:lowering --signal", () => {
  let t: TestServer;
  let model: ModelInfoMessage;

  before(async () => {
    const models = mkdtempSync(join(tmpdir(), "ctm-lowering-signal-"));
    symlinkSync(join(REPO, "models", MAZE), join(models, MAZE));
    t = await startTestServer({ modelsDir: models });
    model = await t.client.getModel(MAZE);
  });
  after(() => t.close());

  it("takes the model's target signal by default and the named one with --signal", () => {
    const options = { confidence: 0.95, target: undefined, floor: undefined };
    assert.deepEqual([...model.halt_signals].sort(), ["HALT_SIGNAL_CERTAINTY", "HALT_SIGNAL_HALT"]);
    assert.equal(chooseTargets(model, { ...options, signal: undefined }).signal, model.target_signal);
    const onCertainty = chooseTargets(model, { ...options, signal: "certainty" });
    const onHalt = chooseTargets(model, { ...options, signal: "halt" });
    for (const [chosen, signal] of [
      [onCertainty, "HALT_SIGNAL_CERTAINTY"],
      [onHalt, "HALT_SIGNAL_HALT"],
    ] as const) {
      assert.equal(chosen.signal, signal);
      const top = topCertified(model, signal);
      assert.equal(chosen.target, top.target);
      assert.deepEqual(chosen.ladder[0], { target: top.target, threshold: top.threshold, meanTicks: top.mean_ticks });
      for (const [i, rung] of chosen.ladder.entries()) {
        if (i > 0) assert.ok(rung.threshold < (chosen.ladder[i - 1]?.threshold as number), "each rung is cheaper");
      }
    }
    assert.notEqual(onCertainty.ladder[0]?.threshold, onHalt.ladder[0]?.threshold, "the two ladders differ");
  });

  it("sends requests that the server runs on the chosen signal, at the ladder's threshold", async () => {
    // The signal that is not the model's default: a request that names none would run on the other.
    const signal = model.target_signal === "HALT_SIGNAL_HALT" ? "certainty" : "halt";
    const chosen = chooseTargets(model, { confidence: 0.95, target: undefined, floor: undefined, signal });
    assert.notEqual(chosen.signal, model.target_signal);
    const { fullDepth, flexible, atFloor } = loweringPolicies(chosen);
    for (const policy of [fullDepth, flexible]) {
      const response = await t.client.classify({ model: MAZE, image: { data: firstSample() }, halt_policy: policy });
      assert.equal(response.halt_signal, chosen.signal);
      assert.equal(response.guarantee?.signal, chosen.signal);
      assert.equal(response.guarantee?.target, chosen.target);
      assert.equal(response.threshold_used, chosen.ladder[0]?.threshold);
    }
    assert.equal(flexible.min_target_accuracy, chosen.floor);
    assert.equal(fullDepth.min_target_accuracy, undefined);
    // The capacity at the floor is measured with every request at the lowest rung: served there.
    const lowest = chosen.ladder.at(-1);
    const atFloorAnswer = await t.client.classify({
      model: MAZE,
      image: { data: firstSample() },
      halt_policy: atFloor,
    });
    assert.equal(atFloorAnswer.guarantee?.target, lowest?.target);
    assert.equal(atFloorAnswer.threshold_used, lowest?.threshold);
  });

  it("refuses a signal it does not know, naming the flag", () => {
    const named = parseLoweringOptions(["--signal", "halt"]);
    const unnamed = parseLoweringOptions([]);
    assert.ok(named !== "help" && unnamed !== "help");
    assert.equal(named.signal, "halt");
    assert.equal(unnamed.signal, undefined, "no --signal: the model's target signal");
    assert.throws(
      () => parseLoweringOptions(["--signal", "entropy"]),
      (error: unknown) =>
        error instanceof LoweringUsageError && /--signal must be certainty or halt/.test(error.message),
    );
  });
});
