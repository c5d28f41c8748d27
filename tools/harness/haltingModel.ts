/**
 * A model with a halting head whatever models/ ships (server/test/fixtures/models/mnist-halting, see
 * its README), and the same model without one: its manifest declares no outputs.halt and its
 * calibration is the schema_version 2 file it would have had before halting heads. The second is a real
 * model too: its tick graph still computes `halt`, which the server then neither fetches nor serves.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { asVersion2, type CalibrationDocument } from "./calibrationDocuments.ts";
import type { GoldenCase, Sample } from "./testServer.ts";
import { REPO } from "./testServer.ts";

export const HALTING_MODEL = "mnist-halting";
export const HEADLESS_MODEL = "mnist-headless";
export const HALTING_DIR = join(REPO, "server", "test", "fixtures", "models", HALTING_MODEL, "1");

const readJson = <T>(file: string): T => JSON.parse(readFileSync(join(HALTING_DIR, file), "utf8")) as T;

export function haltingGolden(): { ticks: number; cases: GoldenCase[] } {
  return readJson("golden.json");
}

export function haltingSamples(): Sample[] {
  return readJson<{ file: string; label: number }[]>("samples/labels.json").map(({ file, label }) => ({
    file,
    label,
    png: readFileSync(join(HALTING_DIR, "samples", file)),
  }));
}

/** A models folder serving the halting model and its headless twin. */
export function haltingModelsDir(): string {
  const root = mkdtempSync(join(tmpdir(), "ctm-halting-"));
  mkdirSync(join(root, HALTING_MODEL));
  symlinkSync(HALTING_DIR, join(root, HALTING_MODEL, "1"));
  const headless = join(root, HEADLESS_MODEL, "1");
  mkdirSync(headless, { recursive: true });
  for (const file of readdirSync(HALTING_DIR)) {
    if (file !== "manifest.json" && file !== "calibration.json")
      symlinkSync(join(HALTING_DIR, file), join(headless, file));
  }
  const manifest = readJson<{ name: string; outputs: Record<string, string> }>("manifest.json");
  manifest.name = HEADLESS_MODEL;
  delete manifest.outputs.halt;
  writeFileSync(join(headless, "manifest.json"), JSON.stringify(manifest));
  writeFileSync(
    join(headless, "calibration.json"),
    JSON.stringify(asVersion2(readJson<CalibrationDocument>("calibration.json"))),
  );
  return root;
}
