/**
 * The maze model: served beside MNIST, and `npm run classify -- maze.png --plot route.png` draws the
 * predicted route over the maze (one panel per tick with --stream). Real server, real CLI process.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import sharp from "sharp";
import { MAZE_MOVES, mazePixels, walkRoute } from "../../../tools/harness/plot/routePlot.ts";
import {
  type GoldenCase,
  MODEL_NAME,
  REPO,
  startTestServer,
  type TestServer,
  tensorRequest,
} from "../../../tools/harness/testServer.ts";

const run = promisify(execFile);
const MAZE = "maze-ctm";
const MAZE_DIR = join(REPO, "models", MAZE, "1");

interface MazeSample {
  file: string;
  label: number[];
}

const mazeSamples = () =>
  (JSON.parse(readFileSync(join(MAZE_DIR, "samples", "labels.json"), "utf8")) as MazeSample[]).slice(0, 8);
const png = (sample: MazeSample) => readFileSync(join(MAZE_DIR, "samples", sample.file));
const movesOf = (label: number[]) => label.map((i) => MAZE_MOVES[i] as string);

describe("maze routes", () => {
  let t: TestServer;
  const dir = mkdtempSync(join(tmpdir(), "ctm-maze-"));

  before(async () => {
    const models = mkdtempSync(join(tmpdir(), "ctm-models-"));
    symlinkSync(join(REPO, "models", MAZE), join(models, MAZE));
    symlinkSync(join(REPO, "models", MODEL_NAME), join(models, MODEL_NAME));
    t = await startTestServer({ modelsDir: models });
  });
  after(() => t.close());

  it("walks a sample's true route from the red start to the green end through open pixels", async () => {
    for (const sample of mazeSamples()) {
      const maze = await mazePixels(png(sample), 15, 15);
      const walk = walkRoute(maze, movesOf(sample.label));
      assert.ok(walk.reachedEnd && !walk.blocked, sample.file);
      assert.equal(walk.cells.length - 1, sample.label.filter((m) => m !== 4).length);
    }
  });

  it("stops a route at the first wall and never claims the end for it", async () => {
    const [sample] = mazeSamples();
    assert.ok(sample);
    const maze = await mazePixels(png(sample), 15, 15);
    // From the start, every direction but the true first one leads into a wall in a perfect maze
    // (a cell's neighbours are walls unless joined) or off to a dead end; try each.
    const first = movesOf(sample.label)[0] as string;
    const wrong = ["up", "down", "left", "right"].filter((m) => m !== first).map((m) => walkRoute(maze, [m, m]));
    assert.ok(wrong.every((w) => !w.reachedEnd));
    assert.ok(wrong.some((w) => w.blocked !== undefined && w.cells.length === 1));
  });

  it("reproduces the export's golden per-tick logits and certainty, from the tensor and from the PNG", async () => {
    const golden = JSON.parse(readFileSync(join(MAZE_DIR, "golden.json"), "utf8")) as {
      ticks: number;
      cases: (GoldenCase & { sample: string })[];
    };
    assert.ok(golden.cases.length > 0);
    const all = { min_ticks: golden.ticks, max_ticks: golden.ticks };
    for (const [i, g] of golden.cases.entries()) {
      // The PNG goes through the server's image preprocessing (resize, (x - 0.5) / 0.5): the same numbers.
      const fromPng = await t.client.classify({
        model: MAZE,
        image: { data: readFileSync(join(MAZE_DIR, g.sample)) },
        halt_policy: all,
        include_trace: true,
      });
      const fromTensor = await t.client.classify({
        ...tensorRequest(g, all),
        model: MAZE,
        include_trace: true,
      });
      for (const response of [fromPng, fromTensor]) {
        assert.equal(response.trace.length, golden.ticks);
        response.trace.forEach((tick, k) => {
          const worst = Math.max(...tick.logits.map((v, j) => Math.abs(v - (g.logits[k]?.[j] as number))));
          assert.ok(worst <= 1e-4, `case ${i} tick ${k + 1}: logits differ by ${worst}`);
          assert.ok(Math.abs(tick.certainty - (g.certainty[k] as number)) <= 1e-4);
        });
      }
    }
  });

  it("serves the maze model beside MNIST with its route labels", async () => {
    const { models } = await t.client.listModels();
    const names = models.map((m) => m.name).sort();
    assert.deepEqual(names, [MAZE, MODEL_NAME].sort());
    const maze = models.find((m) => m.name === MAZE);
    assert.deepEqual(maze?.labels, [...MAZE_MOVES]);
    assert.equal(maze?.output_shape.length, 2);
  });

  const classify = (...args: string[]) =>
    run(
      process.execPath,
      ["--import", "tsx", "tools/classify/classify.ts", "--address", t.address, "--model", MAZE, ...args],
      { cwd: REPO, encoding: "utf8" },
    );

  it("--plot draws the answer tick's route over the maze, and it is the route the server answered", async () => {
    const sample = mazeSamples()[0] as MazeSample;
    const file = join(dir, "maze.png");
    writeFileSync(file, png(sample));
    const expected = await t.client.classify({
      model: MAZE,
      image: { data: png(sample) },
      halt_policy: { certainty_threshold: 1 },
    });
    const plot = join(dir, "route.png");
    const { stdout } = await classify(file, "--plot", plot, "--threshold", "1");
    assert.match(stdout, /plot saved to/);
    const meta = await sharp(plot).metadata();
    assert.equal(meta.format, "png");
    assert.ok((meta.width ?? 0) >= 480 && (meta.height ?? 0) >= 480);
    // The route is drawn in blue when it reaches the end, orange otherwise: count those pixels.
    const answered = walkRoute(
      await mazePixels(png(sample), 15, 15),
      expected.positions.map((p) => p.label),
    );
    const { data, info } = await sharp(plot).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    // The line is drawn at opacity 0.85, and a route runs over open (white) pixels.
    const [r, g, b] = (answered.reachedEnd ? [0x1f, 0x5f, 0xd6] : [0xe0, 0x8a, 0x00]).map((c) => 0.85 * c + 0.15 * 255);
    let routePixels = 0;
    for (let i = 0; i < info.width * info.height * 3; i += 3) {
      if (
        Math.abs((data[i] ?? 0) - (r as number)) +
          Math.abs((data[i + 1] ?? 0) - (g as number)) +
          Math.abs((data[i + 2] ?? 0) - (b as number)) <
        20
      )
        routePixels++;
    }
    if (answered.cells.length > 1) assert.ok(routePixels > 200, `route pixels: ${routePixels}`);
  });

  it("--stream --plot draws one panel per tick, in a strip", async () => {
    const sample = mazeSamples()[1] as MazeSample;
    const file = join(dir, "maze-stream.png");
    writeFileSync(file, png(sample));
    const single = join(dir, "single.png");
    const strip = join(dir, "strip.png");
    await classify(file, "--plot", single, "--threshold", "1");
    const { stdout } = await classify(file, "--stream", "--plot", strip, "--threshold", "1");
    const ticks = stdout.split("\n").filter((line) => /^\s+\d+\s/.test(line)).length;
    const [a, b] = [await sharp(single).metadata(), await sharp(strip).metadata()];
    assert.ok(ticks > 6);
    // Six panels a row: a strip of `ticks` panels is wider than one panel and has ceil(ticks / 6) rows.
    assert.ok((b.width ?? 0) > (a.width ?? 0) * 2, `${b.width} vs ${a.width}`);
    assert.ok((b.height ?? 0) > (a.height ?? 0) * 0.5 * Math.ceil(ticks / 6) * 0.9);
  });
});
