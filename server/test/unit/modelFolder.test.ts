import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { asVersion2, type CalibrationDocument } from "../../../tools/harness/calibrationDocuments.ts";
import { HALTING_DIR, HALTING_MODEL } from "../../../tools/harness/haltingModel.ts";
import { MODEL_NAME, modelDir, readModelJson } from "../../../tools/harness/testServer.ts";
import { discoverModelFolders, loadModelFolder, ModelFolderError } from "../../src/model/modelFolder.ts";

type Json = Record<string, unknown>;

/** A copy of the shipped model folder (files linked) whose manifest `edit` has changed. */
function folderWith(edit: (manifest: Json) => void, name = MODEL_NAME, version = "1"): string {
  const root = mkdtempSync(join(tmpdir(), "ctm-manifest-"));
  const dir = join(root, name, version);
  mkdirSync(dir, { recursive: true });
  for (const file of readdirSync(modelDir())) {
    if (file !== "manifest.json") symlinkSync(join(modelDir(), file), join(dir, file));
  }
  const manifest = readModelJson<Json>("manifest.json");
  manifest.version = Number(version);
  edit(manifest);
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
  return dir;
}

function fails(edit: (manifest: Json) => void, message: RegExp) {
  assert.throws(
    () => loadModelFolder(folderWith(edit)),
    (error: unknown) => error instanceof ModelFolderError && message.test(error.message),
    String(message),
  );
}

const at = (manifest: Json, path: string): Json => path.split(".").reduce((o, key) => o[key] as Json, manifest);

describe("model folders", () => {
  it("load the shipped model with everything derived from its manifest", () => {
    const model = loadModelFolder(modelDir());
    const manifest = readModelJson<Json>("manifest.json");
    assert.equal(model.manifest.name, manifest.name);
    assert.deepEqual(model.manifest.input.shape, at(manifest, "input").shape);
    assert.deepEqual(model.manifest.output.labels, at(manifest, "output").labels);
    assert.equal(model.manifest.state.length, (manifest.state as unknown[]).length);
    assert.ok(model.calibration && model.calibration.signals.certainty.thresholds.length > 0);
    const thresholds = model.calibration.signals.certainty.thresholds.map((p) => p.threshold);
    assert.deepEqual(
      thresholds,
      [...thresholds].sort((a, b) => a - b),
    );
  });

  it("serve the highest version of each model", () => {
    const root = join(
      folderWith(() => {}, "alpha", "2"),
      "..",
      "..",
    );
    mkdirSync(join(root, "alpha", "10"));
    writeFileSync(join(root, "alpha", "10", "manifest.json"), "{}");
    mkdirSync(join(root, "alpha", "draft"));
    mkdirSync(join(root, "empty"));
    assert.deepEqual(discoverModelFolders(root), [join(root, "alpha", "10")]);
    assert.throws(
      () => discoverModelFolders(join(root, "empty")),
      /no models found in .*empty: expected <name>\/<version>\/manifest.json/,
    );
    assert.throws(() => discoverModelFolders(join(root, "missing")), /models dir .*missing does not exist/);
  });

  it("reject a manifest that is wrong, naming the field", () => {
    fails((m) => {
      m.schema_version = 2;
    }, /manifest.json: schema_version must be 1/);
    fails((m) => {
      at(m, "input.image").height = 0;
    }, /input\.image\.height must be an integer >= 1, got 0/);
    fails((m) => {
      at(m, "input.image").preprocess = "sepia";
    }, /input\.image\.preprocess must be one of "mnist-digit", "resize", "center-crop", got "sepia"/);
    fails((m) => {
      at(m, "input.image").preprocess = "center-crop";
    }, /input\.image\.resize_shorter is required when preprocess is "center-crop"/);
    fails((m) => {
      Object.assign(at(m, "input.image"), { preprocess: "center-crop", resize_shorter: 27 });
    }, /input\.image\.resize_shorter must be at least max\(height, width\) = 28 to crop from, got 27/);
    fails((m) => {
      Object.assign(at(m, "input.image"), { preprocess: "center-crop", resize_shorter: 2.5 });
    }, /input\.image\.resize_shorter must be an integer, got 2\.5/);
    fails((m) => {
      at(m, "input.image").resize_shorter = 32;
    }, /input\.image\.resize_shorter applies only when preprocess is "center-crop", not "mnist-digit"/);
    fails((m) => {
      at(m, "input.image.normalize").std = [0];
    }, /input\.image\.normalize\.std must be positive, got 0/);
    fails((m) => {
      at(m, "output").labels = ["a", "b"];
    }, /output\.labels must name every class: expected \d+ labels, got 2/);
    fails((m) => {
      at(m, "ticks").max = "many";
    }, /ticks\.max must be an integer, got "many"/);
    fails((m) => {
      (m.state as Json[])[0] = { ...(m.state as Json[])[0], output: "nowhere" };
    }, /state\[0\]\.output "nowhere" is not among graphs\.tick\.outputs/);
    fails((m) => {
      (m.context as Json[])[0] = { ...(m.context as Json[])[0], shape: [2, 2] };
    }, /context\[0\]\.shape \[2,2\] does not match graphs\.encoder\.outputs/);
    fails((m) => {
      at(m, "outputs").certainty = "logits";
    }, /outputs\.certainty "logits" has \d+ value\(s\) per item, expected 1/);
    fails((m) => {
      at(m, "graphs.tick").file = "missing.onnx";
    }, /graphs\.tick\.file names .*missing\.onnx, which does not exist/);
    fails((m) => {
      m.name = "other";
    }, /name\/version "other\/1" does not match the folder "mnist-ctm\/1"/);
  });

  it("read a halting head's outputs.halt, check it, and refuse a halt calibration without one", () => {
    const halting = (edit: (manifest: Json) => void, calibration?: unknown) => {
      const root = mkdtempSync(join(tmpdir(), "ctm-halting-manifest-"));
      const dir = join(root, HALTING_MODEL, "1");
      mkdirSync(dir, { recursive: true });
      for (const file of readdirSync(HALTING_DIR)) {
        if (file !== "manifest.json" && !(calibration && file === "calibration.json"))
          symlinkSync(join(HALTING_DIR, file), join(dir, file));
      }
      const manifest = JSON.parse(readFileSync(join(HALTING_DIR, "manifest.json"), "utf8")) as Json;
      edit(manifest);
      writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
      if (calibration) writeFileSync(join(dir, "calibration.json"), JSON.stringify(calibration));
      return dir;
    };
    const model = loadModelFolder(halting(() => {}));
    assert.equal(model.manifest.outputs.halt, "halt");
    assert.deepEqual(Object.keys(model.calibration?.signals ?? {}), ["certainty", "halt"]);
    const refused = (edit: (manifest: Json) => void, message: RegExp, calibration?: unknown) =>
      assert.throws(
        () => loadModelFolder(halting(edit, calibration)),
        (error: unknown) => error instanceof ModelFolderError && message.test(error.message),
        String(message),
      );
    refused((m) => {
      at(m, "outputs").halt = "nope";
    }, /outputs\.halt "nope" is not among graphs\.tick\.outputs/);
    refused((m) => {
      at(m, "outputs").halt = "logits";
    }, /outputs\.halt "logits" must be \["batch"\] \(one value per item\), got \["batch",10\]/);
    refused((m) => {
      delete at(m, "outputs").halt;
    }, /calibration\.json: signals\.halt calibrates a halting head, but manifest\.json declares no outputs\.halt/);
    // Without the head and with a certainty-only calibration, it is a model like any other.
    const calibration = JSON.parse(readFileSync(join(HALTING_DIR, "calibration.json"), "utf8")) as CalibrationDocument;
    const headless = loadModelFolder(
      halting((m) => {
        delete at(m, "outputs").halt;
      }, asVersion2(calibration)),
    );
    assert.equal(headless.manifest.outputs.halt, undefined);
    assert.equal(headless.calibration?.schemaVersion, 2);
    // The signal targets are certified on when a request names none: read where the file names it,
    // refused by name when it names one the file does not calibrate.
    const naming = (signal: string) => ({ ...calibration, target_signal: { signal, rule: "test" } });
    assert.equal(loadModelFolder(halting(() => {}, naming("certainty"))).calibration?.targetSignal, "certainty");
    assert.equal(model.calibration?.targetSignal, undefined, "the fixture names none");
    refused(() => {}, /target_signal\.signal must be one of "certainty", "halt", got "sometimes"/, naming("sometimes"));
  });

  it("name the signal targets are certified on in the shipped calibrations: halt for MNIST, certainty for the maze", () => {
    assert.equal(loadModelFolder(modelDir()).calibration?.targetSignal, "halt");
    assert.equal(loadModelFolder(join(modelDir(), "..", "..", "maze-ctm", "1")).calibration?.targetSignal, "certainty");
  });
});
