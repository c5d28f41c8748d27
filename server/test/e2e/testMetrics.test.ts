/**
 * GetModel reports how each model did on its data set's held-out test split (ModelInfo.test_metrics),
 * as the exporter wrote it into manifest.json's metrics.test: the shipped maze model (a route: accuracy
 * per move and the share of mazes solved) and the shipped MNIST model (a classifier: no `solved`), over
 * a real server. A model whose manifest has no metrics - as older exports and reference imports - has
 * none, and one whose metrics are wrong fails to load with the field named.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { HALTING_DIR } from "../../../tools/harness/haltingModel.ts";
import { REPO, startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";
import type { ModelInfoMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";

const SHIPPED = ["maze-ctm", "mnist-ctm"] as const;
const UNMEASURED = "mnist-unmeasured";
const MISREPORTED = "mnist-misreported";

interface ManifestTest {
  count: number;
  accuracy_most_certain: number;
  accuracy_last_tick: number;
  by_tick: { ticks: number; accuracy_at_tick: number; accuracy_most_certain: number; solved_at_tick?: number }[];
  signals: Record<string, { accuracy_full_run: number; solved_full_run?: number }>;
}

const readManifest = (dir: string) =>
  JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as {
    name: string;
    metrics?: { test: ManifestTest };
  };

/** The fixture model under another name, its manifest edited; its other files linked. */
function derivedModel(root: string, name: string, edit: (manifest: ReturnType<typeof readManifest>) => void): void {
  const dir = join(root, name, "1");
  mkdirSync(dir, { recursive: true });
  for (const file of readdirSync(HALTING_DIR)) {
    if (file !== "manifest.json") symlinkSync(join(HALTING_DIR, file), join(dir, file));
  }
  const manifest = readManifest(HALTING_DIR);
  manifest.name = name;
  edit(manifest);
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
}

function modelsDir(): string {
  const root = mkdtempSync(join(tmpdir(), "ctm-test-metrics-"));
  for (const name of SHIPPED) symlinkSync(join(REPO, "models", name), join(root, name));
  derivedModel(root, UNMEASURED, (manifest) => {
    delete manifest.metrics;
  });
  derivedModel(root, MISREPORTED, (manifest) => {
    (manifest.metrics as { test: ManifestTest }).test.accuracy_most_certain = 1.5;
  });
  return root;
}

/** What GetModel must say, written out from the manifest's own JSON; no `solved` where it has none. */
function expectedFrom(test: ManifestTest) {
  const signalNames: Record<string, string> = { certainty: "HALT_SIGNAL_CERTAINTY", halt: "HALT_SIGNAL_HALT" };
  return {
    count: test.count,
    accuracy_most_certain: test.accuracy_most_certain,
    accuracy_last_tick: test.accuracy_last_tick,
    signals: Object.entries(test.signals).map(([name, block]) => ({
      signal: signalNames[name],
      accuracy_full_run: block.accuracy_full_run,
      ...(block.solved_full_run !== undefined && { solved_full_run: block.solved_full_run }),
    })),
    by_tick: test.by_tick.map((row) => ({
      tick: row.ticks,
      accuracy_at_tick: row.accuracy_at_tick,
      accuracy_most_certain: row.accuracy_most_certain,
      ...(row.solved_at_tick !== undefined && { solved_at_tick: row.solved_at_tick }),
    })),
  };
}

/** The message as decoded, less the oneofs' virtual case fields (`solved_value`). */
function received(info: ModelInfoMessage) {
  const metrics = info.test_metrics;
  assert.ok(metrics, `${info.name}: GetModel has test_metrics`);
  const plain = JSON.parse(JSON.stringify(metrics)) as Record<string, unknown> & {
    signals: Record<string, unknown>[];
    by_tick: Record<string, unknown>[];
  };
  for (const row of [...plain.signals, ...plain.by_tick]) delete row.solved_value;
  return plain;
}

describe("GetModel's test metrics, over a real server", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ modelsDir: modelsDir(), onModelError: "skip" });
  });
  after(() => t?.close());

  for (const name of SHIPPED) {
    it(`${name}: equal to manifest.json's metrics.test`, async () => {
      const { metrics } = readManifest(join(REPO, "models", name, "1"));
      assert.ok(metrics?.test, `models/${name}/1/manifest.json has metrics.test`);
      const info = await t.client.getModel(name);
      assert.deepEqual(received(info), expectedFrom(metrics.test));
    });
  }

  it("maze-ctm: the share of mazes solved per signal and per tick; mnist-ctm: none", async () => {
    const maze = await t.client.getModel("maze-ctm");
    const mnist = await t.client.getModel("mnist-ctm");
    const certainty = maze.test_metrics?.signals.find((s) => s.signal === "HALT_SIGNAL_CERTAINTY");
    assert.ok(certainty?.solved_full_run !== undefined && certainty.solved_full_run > 0.5, "most mazes solved");
    assert.equal(certainty.accuracy_full_run, maze.test_metrics?.accuracy_most_certain);
    assert.equal(maze.test_metrics?.by_tick.length, maze.trained_ticks, "one row per tick");
    assert.ok(maze.test_metrics?.by_tick.every((row) => row.solved_at_tick !== undefined));
    assert.deepEqual(
      maze.test_metrics?.signals.map((s) => s.signal),
      ["HALT_SIGNAL_CERTAINTY", "HALT_SIGNAL_HALT"],
    );
    assert.ok(
      mnist.test_metrics?.signals.every((s) => s.solved_full_run === undefined),
      "a classifier solves nothing",
    );
    assert.ok(mnist.test_metrics?.by_tick.every((row) => row.solved_at_tick === undefined));
  });

  it("ListModels carries them too", async () => {
    const { models } = await t.client.listModels();
    const maze = models.find((m) => m.name === "maze-ctm");
    assert.equal(maze?.test_metrics?.count, readManifest(join(REPO, "models", "maze-ctm", "1")).metrics?.test.count);
  });

  it("a model whose manifest has no metrics serves without them", async () => {
    const info = await t.client.getModel(UNMEASURED);
    assert.equal(info.state, "MODEL_STATE_READY");
    assert.ok("test_metrics" in info, "ModelInfo has the field, unset");
    assert.equal(info.test_metrics, null);
  });

  it("a model whose metrics are wrong fails to load, naming the field", async () => {
    const info = await t.client.getModel(MISREPORTED);
    assert.equal(info.state, "MODEL_STATE_FAILED");
    assert.match(info.load_error, /manifest\.json: metrics\.test\.accuracy_most_certain must be <= 1, got 1\.5/);
  });
});
