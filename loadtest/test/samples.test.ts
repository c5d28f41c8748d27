import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { loadSamples } from "../../tools/harness/index.ts";

const MODEL_DIR = fileURLToPath(new URL("../../models/mnist-ctm/1", import.meta.url));

describe("loadSamples", () => {
  const dir = mkdtempSync(join(tmpdir(), "samples-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("reads a model folder's labelled samples through its manifest", () => {
    const set = loadSamples(MODEL_DIR);
    assert.equal(set.source, join(MODEL_DIR, "samples/labels.json"));
    assert.ok(set.samples.length > 0);
    assert.equal(set.labelled, set.samples.length);
    const [first] = set.samples;
    assert.ok(first && "image" in first.input && first.input.image.data.length > 0);
    assert.equal(first?.label?.length, 1);
  });

  it("reads a folder of images without labels, sorted by name", () => {
    const images = join(dir, "images");
    mkdirSync(images);
    writeFileSync(join(images, "b.png"), "b");
    writeFileSync(join(images, "a.jpg"), "a");
    writeFileSync(join(images, "notes.txt"), "not an image");
    const set = loadSamples(images);
    assert.deepEqual(
      set.samples.map((s) => [s.name, s.label]),
      [
        ["a.jpg", null],
        ["b.png", null],
      ],
    );
    assert.equal(set.labelled, 0);
  });

  it("reads tensor samples with multi-position labels", () => {
    const file = join(dir, "tensors.json");
    writeFileSync(file, JSON.stringify([{ tensor: [1, -1, 1], shape: [3], label: [1, 0, 1] }]));
    const [only] = loadSamples(file).samples;
    assert.deepEqual(only, { name: "#0", input: { tensor: { shape: [3], values: [1, -1, 1] } }, label: [1, 0, 1] });
  });

  it("names the entry that is wrong", () => {
    const file = join(dir, "bad.json");
    writeFileSync(file, JSON.stringify([{ file: "x.png", label: "seven" }]));
    assert.throws(() => loadSamples(file), /bad\.json\[0\]\.label must be a class index/);
    assert.throws(() => loadSamples(join(dir, "missing")), /does not exist/);
  });
});
