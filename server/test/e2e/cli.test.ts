/** The command-line client (`npm run classify`), run as a process against a real server. */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import sharp from "sharp";
import { HALTING_MODEL, haltingModelsDir, haltingSamples } from "../../../tools/harness/haltingModel.ts";
import { digitPhoto } from "../../../tools/harness/index.ts";
import {
  MODEL_NAME,
  REPO,
  type Sample,
  samples,
  startTestServer,
  type TestServer,
} from "../../../tools/harness/testServer.ts";
import type { TickUpdateMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";

const run = promisify(execFile);

describe("npm run classify", () => {
  let t: TestServer;
  let sample: Sample;
  let file: string;
  const dir = mkdtempSync(join(tmpdir(), "ctm-cli-"));

  before(async () => {
    t = await startTestServer();
    sample = samples()[3] as Sample;
    file = join(dir, sample.file);
    writeFileSync(file, sample.png);
  });
  after(() => t.close());

  const classify = (...args: string[]) =>
    run(process.execPath, ["--import", "tsx", "tools/classify/classify.ts", "--address", t.address, ...args], {
      cwd: REPO,
      encoding: "utf8",
    });

  it("prints a table of every tick and the answer, as the server decided it", async () => {
    const expected = await t.client.classify({
      model: MODEL_NAME,
      image: { data: sample.png },
      halt_policy: { certainty_threshold: 0.8 },
    });
    const { stdout } = await classify(file, "--threshold", "0.8");
    const rows = stdout.split("\n").filter((line) => /^\s+\d+\s/.test(line));
    assert.equal(rows.length, expected.ticks_used);
    // tick, top-1 and p, certainty, halt for a model with a halting head, and the bar.
    const halt = (await t.client.getModel(MODEL_NAME)).halt_signals.includes("HALT_SIGNAL_HALT")
      ? "\\d\\.\\d{3}\\s+"
      : "";
    rows.forEach((row, i) => {
      assert.match(row, new RegExp(`^\\s+${i + 1}\\s+\\S+\\s+\\d\\.\\d{3}\\s+\\d\\.\\d{3}\\s+${halt}[#.|]+$`));
    });
    const top = expected.top_k[0];
    assert.ok(top);
    assert.match(
      stdout,
      new RegExp(
        `answer: ${top.label} \\(p ${top.probability.toFixed(3)}\\), certainty ${expected.certainty.toFixed(3)}, ${halt ? `halt ${expected.halt?.toFixed(3)}, ` : ""}from tick ${expected.answer_tick}`,
      ),
    );
    assert.match(stdout, new RegExp(`halted after ${expected.ticks_used} tick\\(s\\)`));
  });

  it("streams JSON lines, one per tick, the last one final", async () => {
    const { stdout } = await classify(file, "--stream", "--json", "--max-ticks", "5", "--threshold", "1");
    const lines = stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as TickUpdateMessage);
    assert.ok(lines.length >= 1 && lines.length <= 5);
    lines.forEach((line, i) => {
      assert.equal(line.tick, i + 1);
    });
    const last = lines.at(-1) as TickUpdateMessage;
    assert.ok(last.final && last.result);
    assert.equal(last.result.ticks_used, lines.length);
    assert.ok(!Object.keys(last).some((key) => key.startsWith("_")), "no proto-loader internals");
  });

  it("saves a PNG plot of probabilities and certainty over ticks", async () => {
    const plot = join(dir, "plot.png");
    const { stdout } = await classify(file, "--plot", plot, "--min-ticks", "8");
    assert.match(stdout, /plot saved to/);
    const meta = await sharp(plot).metadata();
    assert.equal(meta.format, "png");
    assert.ok((meta.width ?? 0) >= 400 && (meta.height ?? 0) >= 200);
    const { data } = await sharp(plot).greyscale().raw().toBuffer({ resolveWithObject: true });
    assert.ok(
      data.some((v) => v < 64),
      "something is drawn",
    );
  });

  for (const mode of [[], ["--stream"]]) {
    it(`reports the server's error alone, without a table header, and exits 1 (${mode[0] ?? "unary"})`, async () => {
      const failed = await classify(file, "--threshold", "1.5", ...mode).then(
        () => undefined,
        (error: { code: number; stdout: string; stderr: string }) => error,
      );
      assert.equal(failed?.code, 1);
      assert.match(
        failed?.stderr ?? "",
        /INVALID_ARGUMENT: halt_policy\.certainty_threshold must be in \(0, 1\], got 1\.5/,
      );
      assert.equal(failed?.stdout, "");
    });
  }

  it("explains its usage and exits 2 when called wrongly", async () => {
    const failed = await classify("--threshold").then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    assert.equal(failed?.code, 2);
    assert.match(failed?.stderr ?? "", /Usage: npm run classify/);
  });

  it("asks for a guaranteed target and says whether the guarantee was met", async () => {
    const met = await classify(file, "--target-accuracy", "0.95", "--target-confidence", "0.9");
    assert.match(
      met.stdout,
      /guarantee met: accuracy >= 0\.95 with confidence 0\.9 \(certified on \d+ calibration items; error <= 0\.\d{4}\)/,
    );
    const notMet = await classify(file, "--target-consistency", "0.9999");
    assert.match(
      notMet.stdout,
      /guarantee NOT met: consistency >= 0\.9999 with confidence 0\.95: no threshold on (certainty|halt) certifies/,
    );
  });

  it("scales a phone photo down before sending it; --no-shrink sends it whole, which the defaults take too", async () => {
    // A 4032 x 3024 JPEG of about 4 MB, as a phone saves a picture of a digit on paper.
    const photo = await digitPhoto(sample.png, {
      size: 1600,
      canvas: { width: 4032, height: 3024 },
      offset: { x: 1400, y: 600 },
      format: "jpeg",
      quality: 95,
    });
    assert.ok(photo.length > 3_500_000, `the photo is ${photo.length} bytes`);
    const path = join(dir, "phone-photo.jpg");
    writeFileSync(path, photo);
    const shrunk = await classify(path);
    assert.match(
      shrunk.stderr,
      /^classify: .*phone-photo\.jpg is 4032 x 3024 pixels, 4\.\d MB: sent as 1024 x 768, \d+ KB \(the model reads 28 pixels a side; --no-shrink sends it as it is\)\n$/,
    );
    assert.match(shrunk.stdout, new RegExp(`answer: ${sample.label} \\(p `));
    // Whole, it is within the default --max-image-bytes (8 MiB) and --max-image-pixels (16.8 M for a
    // 28 x 28 model): the same answer, and nothing on stderr. It used to be refused at 1 MiB, naming no flag.
    const whole = await classify(path, "--no-shrink");
    assert.equal(whole.stderr, "");
    assert.match(whole.stdout, new RegExp(`answer: ${sample.label} \\(p `));
    // A small image goes as it is, without a note.
    assert.equal((await classify(file)).stderr, "");
  });
});

describe("npm run classify on a model with a halting head", () => {
  let t: TestServer;
  let file: string;
  const dir = mkdtempSync(join(tmpdir(), "ctm-cli-halt-"));

  before(async () => {
    t = await startTestServer({ modelsDir: haltingModelsDir() });
    const sample = haltingSamples()[0] as Sample;
    file = join(dir, sample.file);
    writeFileSync(file, sample.png);
  });
  after(() => t.close());

  const classify = (...args: string[]) =>
    run(
      process.execPath,
      ["--import", "tsx", "tools/classify/classify.ts", "--address", t.address, "--model", HALTING_MODEL, ...args],
      { cwd: REPO, encoding: "utf8" },
    );

  it("prints the halt signal per tick beside certainty and halts on the signal asked for", async () => {
    const expected = await t.client.classify({
      model: HALTING_MODEL,
      image: { data: readFileSync(file) },
      halt_policy: { halt_signal: "HALT_SIGNAL_HALT", halt_threshold: 0.85 },
      include_trace: true,
    });
    const { stdout } = await classify(file, "--signal", "halt", "--halt-threshold", "0.85");
    assert.match(stdout, /^tick\s+top-1\s+p\s+certainty {2}halt$/m);
    const rows = stdout.split("\n").filter((line) => /^\s+\d+\s/.test(line));
    assert.equal(rows.length, expected.ticks_used);
    rows.forEach((row, i) => {
      const tick = expected.trace[i] as TickUpdateMessage;
      assert.match(
        row,
        new RegExp(
          `^\\s+${i + 1}\\s+\\S+\\s+\\d\\.\\d{3}\\s+${tick.certainty.toFixed(3)}\\s+${tick.halt?.toFixed(3)}\\s+[#.|]+$`,
        ),
      );
    });
    assert.match(stdout, new RegExp(`, halt ${expected.halt?.toFixed(3)}, from tick ${expected.answer_tick}`));
    if (expected.halt_reason === "HALT_REASON_THRESHOLD")
      assert.match(stdout, /halt reached the threshold \(threshold 0\.850 on halt\)/);
    else assert.match(stdout, /\(threshold 0\.850 on halt\)/);
    const bad = await classify(file, "--signal", "halting").then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );
    assert.equal(bad?.code, 2);
    assert.match(bad?.stderr ?? "", /--signal must be certainty or halt, got "halting"/);
  });

  it("prints halt in the JSON lines, without proto-loader's name for the oneof", async () => {
    const { stdout } = await classify(file, "--stream", "--json", "--signal", "halt");
    const lines = stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as TickUpdateMessage & Record<string, unknown>);
    assert.ok(lines.length > 0);
    for (const line of lines) {
      assert.equal(typeof line.halt, "number");
      assert.equal(line.halt_signal, "HALT_SIGNAL_HALT");
      assert.ok(!("halt_value" in line), "no halt_value");
    }
  });

  it("plots the halt signal in its own colour", async () => {
    const plot = join(dir, "halt.png");
    await classify(file, "--plot", plot, "--min-ticks", "8");
    const { data, info } = await sharp(plot).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const [r, g, b] = [0x94, 0x00, 0xd3];
    let violet = 0;
    for (let i = 0; i < data.length; i += info.channels) {
      if (
        Math.abs((data[i] as number) - r) +
          Math.abs((data[i + 1] as number) - g) +
          Math.abs((data[i + 2] as number) - b) <
        30
      )
        violet++;
    }
    assert.ok(violet > 200, `${violet} pixels of the halt line and its legend`);
  });
});
