/**
 * Models imported from the reference implementation's own checkpoint files are served unchanged: a
 * CIFAR-10 classifier (ResNet backbone, RGB, per-channel normalisation) and a maze solver (a route of
 * [6, 5] moves through the multi-position path). training/ generates the checkpoints in the
 * reference's layout, exports them with `ctm.export --reference`, and records PyTorch's per-tick
 * outputs on an RGB PNG, which the server must reproduce through gRPC.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { type GoldenCase, REPO, startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";

const TOLERANCE = 1e-4;
const MODELS = ["cifar10-ref", "maze-ref"] as const;

interface ImageCase {
  png: string;
  logits: number[][];
  certainty: number[];
}

function maxDifference(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++)
    worst = Math.max(worst, Math.abs((actual[i] as number) - (expected[i] as number)));
  return worst;
}

describe("reference checkpoints, imported and served", () => {
  const root = mkdtempSync(join(tmpdir(), "ctm-reference-"));
  let t: TestServer;

  before(async () => {
    execFileSync(process.execPath, ["scripts/py.mjs", "-m", "tests.reference_layouts", root], {
      cwd: REPO,
      stdio: "pipe",
    });
    t = await startTestServer({ modelsDir: join(root, "models") });
  });
  after(() => t?.close());

  it("lists both models with their labels and output shapes", async () => {
    const cifar = await t.client.getModel("cifar10-ref");
    assert.equal(cifar.labels?.[0], "airplane");
    const maze = await t.client.getModel("maze-ref");
    assert.deepEqual(maze.labels, ["up", "down", "left", "right", "wait"]);
  });

  for (const name of MODELS) {
    it(`${name}: an RGB PNG gives PyTorch's logits and certainty at every tick`, async () => {
      const expected = JSON.parse(readFileSync(join(root, "cases", `${name}.json`), "utf8")) as ImageCase;
      const png = readFileSync(join(root, "cases", expected.png));
      const ticks = expected.logits.length;
      const updates = await t.client.collect({
        model: name,
        image: { data: png },
        halt_policy: { min_ticks: ticks, max_ticks: ticks },
      });
      assert.equal(updates.length, ticks);
      updates.forEach((update, i) => {
        const logits = maxDifference(update.logits, expected.logits[i] as number[]);
        assert.ok(logits <= TOLERANCE, `${name} tick ${i + 1}: logits differ by ${logits}`);
        const certainty = Math.abs(update.certainty - (expected.certainty[i] as number));
        assert.ok(certainty <= TOLERANCE, `${name} tick ${i + 1}: certainty differs by ${certainty}`);
      });
      if (name === "maze-ref") {
        const positions = updates.at(-1)?.positions ?? [];
        assert.equal(positions.length, 6, "one move per route step");
        assert.ok(positions.every((p) => ["up", "down", "left", "right", "wait"].includes(p.label)));
      }
    });

    it(`${name}: golden.json's synthetic inputs match through the tensor path`, async () => {
      const golden = JSON.parse(readFileSync(join(root, "models", name, "1", "golden.json"), "utf8")) as {
        ticks: number;
        cases: GoldenCase[];
      };
      for (const c of golden.cases) {
        const updates = await t.client.collect({
          model: name,
          tensor: { shape: c.input_shape, values: c.input },
          halt_policy: { min_ticks: golden.ticks, max_ticks: golden.ticks },
        });
        updates.forEach((update, i) => {
          const logits = maxDifference(update.logits, c.logits[i] as number[]);
          assert.ok(logits <= TOLERANCE, `${name} tick ${i + 1}: logits differ by ${logits}`);
        });
      }
    });
  }
});
