/**
 * `npm run loadtest -- --signal certainty,halt --target-accuracy ... --compare-thresholds` end to end,
 * on a real server with a model that has a halting head (server/test/fixtures/models) and its headless
 * twin: every target is measured on both signals at the threshold the server certified on each, the
 * summary puts the two side by side, the plot is drawn, and --signal halt on the headless model is
 * refused before any point runs.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import { HALTING_DIR, HALTING_MODEL, HEADLESS_MODEL, haltingModelsDir } from "../../tools/harness/haltingModel.ts";
import { startTestServer, type TestServer } from "../../tools/harness/testServer.ts";
import { PLOT_FILES } from "../src/loadtestPlots.ts";
import type { LoadtestResult } from "../src/loadtestResult.ts";
import { RESULT_FILES } from "../src/resultFiles.ts";
import { signalPairs } from "../src/signalComparison.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TARGETS = [0.7, 0.8];

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "loadtest/src/main.ts", ...args], {
      cwd: ROOT,
      timeout: 120_000,
      killSignal: "SIGKILL",
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d;
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("npm run loadtest comparing the two signals at the same certified targets", () => {
  let t: TestServer;
  let work: string;
  let out: string;
  let result: LoadtestResult;

  before(async () => {
    t = await startTestServer({ modelsDir: haltingModelsDir() });
    work = mkdtempSync(join(tmpdir(), "loadtest-signals-"));
    out = join(work, "out");
    const ran = await run([
      ...["--address", t.address, "--model", HALTING_MODEL, "--samples", HALTING_DIR],
      ...["--signal", "certainty,halt", "--target-accuracy", TARGETS.join(","), "--compare-thresholds"],
      ...["--calls", "unary", "--concurrency", "1,2", "--requests", "8", "--warmup-requests", "0"],
      ...["--no-progress", "--out", out],
    ]);
    assert.equal(ran.code, 0, `loadtest failed (exit ${ran.code}):\n${ran.stderr}`);
    result = JSON.parse(readFileSync(join(out, RESULT_FILES.json), "utf8")) as LoadtestResult;
  });
  after(async () => {
    await t?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("measures every target on both signals, each at the threshold the server certified on it", async () => {
    const model = await t.client.getModel(HALTING_MODEL);
    const certifiedAt = (signal: string, target: number) =>
      model.calibration?.signals
        .find((s) => s.signal === signal)
        ?.certified.find((p) => p.kind === "accuracy" && p.target === target && p.confidence === 0.95)?.threshold;
    assert.equal(result.points.length, 2 * 2 * TARGETS.length, "2 loads x 2 signals x the targets");
    for (const p of result.points) {
      assert.ok(p.target, "every point sent a target");
      const name = p.signal === "halt" ? "HALT_SIGNAL_HALT" : "HALT_SIGNAL_CERTAINTY";
      assert.equal(p.threshold, certifiedAt(name, p.target.value), `${p.signal} ${p.target.value}`);
      assert.equal(p.target.met, true);
      assert.equal(p.ok, 8);
    }
    assert.deepEqual(result.settings.signals, ["certainty", "halt"]);
    assert.deepEqual(
      (result.settings.targets ?? []).map((r) => [r.signal, r.target?.value]),
      [
        ["certainty", 0.7],
        ["certainty", 0.8],
        ["halt", 0.7],
        ["halt", 0.8],
      ],
    );
  });

  it("puts the signals side by side in the summary, with halt's throughput and ticks against certainty's", () => {
    const pairs = signalPairs(result);
    assert.equal(pairs.length, 2 * TARGETS.length);
    for (const pair of pairs) {
      assert.ok(pair.certainty && pair.halt);
      assert.equal(pair.throughput, pair.halt.throughputRps / pair.certainty.throughputRps);
      assert.equal(pair.ticks, pair.halt.ticks.mean / pair.certainty.ticks.mean);
    }
    const markdown = readFileSync(join(out, RESULT_FILES.markdown), "utf8");
    const [, compared] = markdown.split("**Signals compared**");
    const rows = (compared ?? "")
      .split("**Thresholds compared**")[0]
      ?.split("\n")
      .filter((line) => line.startsWith("| unary"));
    assert.equal(rows?.length, pairs.length);
    assert.match(markdown, /\| call \| load \| target \| certainty: threshold \| certainty: answers\/s \|/);
    assert.match(rows?.[0] ?? "", /^\| unary \| c=1 \| accuracy 0\.7 \|/);
    const csv = readFileSync(join(out, RESULT_FILES.csv), "utf8").split("\n");
    assert.ok(csv[0]?.split(",").includes("signal"));
  });

  it("draws the comparison", async () => {
    const file = join(out, PLOT_FILES.signals);
    assert.ok(existsSync(file), PLOT_FILES.signals);
    const meta = await sharp(file).metadata();
    assert.equal(meta.format, "png");
    assert.ok((meta.width ?? 0) >= 800 && (meta.height ?? 0) >= 300, `${meta.width}x${meta.height}`);
  });

  it("refuses --signal halt for a model without a halting head before any point runs", async () => {
    const refused = await run([
      ...["--address", t.address, "--model", HEADLESS_MODEL, "--samples", HALTING_DIR, "--signal", "halt"],
      ...["--requests", "1", "--no-progress", "--no-plots", "--out", join(work, "refused")],
    ]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      /--signal halt: model mnist-headless has no halting head \(it halts on certainty only\)/,
    );
    assert.ok(!existsSync(join(work, "refused")));
  });
});
