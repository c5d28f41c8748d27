/**
 * The calibration evidence plots on a real evidence file: `npm run calibrate -- --evidence` on the
 * test model with a halting head (server/test/fixtures/models), whose evidence.json holds coverage
 * per signal, the oracle and the halt signal's reliability; and the same file rewritten in the shape
 * written before halting signals (certainty only), which must still plot.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import sharp from "sharp";
import {
  CALIBRATION_PLOTS,
  type Evidence,
  guaranteePlot,
  reliabilityTicks,
  writeCalibrationPlots,
} from "../plot/calibrationPlots.ts";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const MODEL = join(ROOT, "server", "test", "fixtures", "models", "mnist-halting", "1");
/** The halt signal's colour in every plot (as in the classify plot). */
const HALT = [0x94, 0x00, 0xd3];

async function pixelsOf(file: string, rgb: number[]): Promise<number> {
  const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  let n = 0;
  for (let i = 0; i < data.length; i += info.channels) {
    const distance = rgb.reduce((sum, v, c) => sum + Math.abs((data[i + c] as number) - v), 0);
    if (distance < 30) n++;
  }
  return n;
}

describe("the calibration evidence plots", () => {
  let work: string;
  let evidence: Record<string, unknown>;

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "calibration-plots-"));
    await promisify(execFile)(
      process.execPath,
      [
        "scripts/py.mjs",
        "-m",
        "ctm.calibrate",
        "--evidence",
        "--model",
        MODEL,
        "--splits",
        "5",
        "--out",
        work,
        "--no-plots",
      ],
      { cwd: ROOT, timeout: 300_000 },
    );
    evidence = JSON.parse(readFileSync(join(work, "evidence.json"), "utf8"));
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it("draw both signals, the oracle and the halt signal's reliability from today's evidence", async () => {
    assert.deepEqual(evidence.signals, ["certainty", "halt"]);
    const dir = join(work, "plots");
    const files = await writeCalibrationPlots(join(work, "evidence.json"), dir);
    assert.deepEqual(files, [join(dir, CALIBRATION_PLOTS.guarantee), join(dir, CALIBRATION_PLOTS.reliability)]);
    for (const file of files) {
      assert.equal((await sharp(file).metadata()).format, "png");
      assert.ok((await pixelsOf(file, HALT)) > 200, `${file} draws the halt signal`);
    }
  });

  it("show the reliability of the first tick, doubling ticks and the last", () => {
    assert.deepEqual(reliabilityTicks(15), [1, 2, 4, 8, 15]);
    assert.deepEqual(reliabilityTicks(30), [1, 2, 4, 8, 16, 30]);
    assert.deepEqual(reliabilityTicks(1), [1]);
  });

  it("stretch the coverage axis below 50% to the lowest coverage drawn", () => {
    type Rows = Record<string, Record<string, { coverage_population: number }[]>>;
    const withCoverage = (lowest: number) => {
      const coverage = structuredClone(evidence.coverage) as Rows;
      const rows = Object.values(coverage).flatMap((kinds) => Object.values(kinds).flat());
      for (const r of rows) r.coverage_population = 0.9;
      (rows[0] as { coverage_population: number }).coverage_population = lowest;
      return guaranteePlot({
        ...(evidence as unknown as Evidence),
        coverage: coverage as unknown as Evidence["coverage"],
      });
    };
    // The first panel is accuracy's coverage; its y labels are the ones right-aligned to the axis.
    const lowestLabel = (svg: string) =>
      Math.min(
        ...[...(svg.split("<svg ")[2] as string).matchAll(/text-anchor="end">([^<]*)</g)].map((m) => Number(m[1])),
      );
    assert.equal(lowestLabel(withCoverage(0.9)), 50);
    assert.ok(lowestLabel(withCoverage(0.31)) < 50);
  });

  it("still draw an evidence file from before halting signals", async () => {
    const {
      signals: _signals,
      oracle_mean_ticks: _oracle,
      coverage,
      reliability,
      ...rest
    } = evidence as {
      signals: string[];
      oracle_mean_ticks: number;
      coverage: Record<string, unknown>;
      reliability: Record<string, unknown>[];
    };
    const old = {
      ...rest,
      coverage: coverage.certainty,
      reliability: reliability.map(({ halt: _halt, ...tick }) => tick),
    };
    writeFileSync(join(work, "old.json"), JSON.stringify(old));
    const dir = join(work, "old-plots");
    const files = await writeCalibrationPlots(join(work, "old.json"), dir);
    for (const file of files) {
      assert.equal((await sharp(file).metadata()).format, "png");
      assert.equal(await pixelsOf(file, HALT), 0, `${file} has no halt signal to draw`);
    }
  });
});
