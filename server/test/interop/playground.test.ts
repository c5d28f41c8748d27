/**
 * The playground in a real browser: headless Chromium (Debian's `chromium` package; see README) opens
 * the page served by a real server, a 3 is drawn on the canvas with mouse strokes, the run streams, and
 * the answer, the heatmap and the chart are read back from the page and its canvases' pixels. A
 * screenshot goes to out/playground.png. Skipped, saying so, where Chromium is not installed.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { REPO, startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";
import type { Chromium, Page } from "../support/headlessChromium.ts";
import { openPlayground, withoutChromium } from "../support/playgroundPage.ts";

const skip = withoutChromium;

/** A 3 in the drawing canvas's own 280x280 coordinates: two bowls open to the left. */
const THREE: [number, number][][] = [
  [
    [95, 75],
    [120, 52],
    [160, 48],
    [188, 70],
    [185, 105],
    [160, 130],
    [130, 138],
  ],
  [
    [130, 138],
    [168, 148],
    [192, 180],
    [185, 218],
    [150, 240],
    [110, 238],
    [85, 218],
  ],
];

/** Points every few pixels along the polyline, as a hand moving the mouse would produce. */
function along(points: [number, number][], step = 6): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 1; i < points.length; i++) {
    const [x0, y0] = points[i - 1] as [number, number];
    const [x1, y1] = points[i] as [number, number];
    const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / step));
    for (let k = 0; k < n; k++) out.push([x0 + ((x1 - x0) * k) / n, y0 + ((y1 - y0) * k) / n]);
  }
  out.push(points[points.length - 1] as [number, number]);
  return out;
}

/** Counts a canvas's pixels for which `test` (written in the page, over r, g, b, a) holds. */
function countPixels(page: Page, canvas: string, test: string): Promise<number> {
  return page.evaluate<number>(`(() => {
    const c = document.getElementById(${JSON.stringify(canvas)});
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) { const [r, g, b, a] = [d[i], d[i + 1], d[i + 2], d[i + 3]]; if (${test}) n++; }
    return n;
  })()`);
}

describe("the playground in headless Chromium", { skip }, () => {
  let t: TestServer;
  let browser: Chromium;
  let page: Page;
  before(async () => {
    t = await startTestServer({ http: { host: "127.0.0.1", port: 0 } });
    ({ browser, page } = await openPlayground(t));
  });
  after(async () => {
    await browser?.close();
    await t?.close();
  });

  it("draws a 3, watches it think, and shows the answer, the attention and the chart", async () => {
    const box = await page.evaluate<{ x: number; y: number; width: number; height: number }>(
      `(() => { const r = document.getElementById("draw").getBoundingClientRect(); return { x: r.x, y: r.y, width: r.width, height: r.height }; })()`,
    );
    const scale = box.width / 280;
    for (const stroke of THREE) {
      await page.stroke(along(stroke).map(([x, y]) => [box.x + x * scale, box.y + y * scale] as [number, number]));
    }
    assert.ok(await page.evaluate<boolean>("window.playground.inked"), "the strokes reached the canvas");
    assert.ok((await countPixels(page, "draw", "r > 200")) > 2000, "the 3 is drawn in white");

    // A clear digit may halt at its first tick; eight ticks draw the lines of the chart.
    await page.evaluate(`document.getElementById("min-ticks").value = "8"`);
    await page.evaluate(`document.getElementById("think").click()`);
    await page.waitFor("window.playground.run?.done", "the run to finish", 60_000);
    await page.evaluate(`document.getElementById("min-ticks").value = "0"`);
    const run = await page.evaluate<{
      error: { code: string; message: string } | undefined;
      ticks: number[];
      final: { top_k: { label: string }[]; ticks_used: number; halt_reason: string } | undefined;
    }>(
      `({ error: window.playground.error, ticks: window.playground.run.ticks.map((t) => t.tick), final: window.playground.run.final })`,
    );
    assert.equal(run.error, undefined);
    assert.ok(run.final, "the final tick arrived");
    assert.deepEqual(
      run.ticks,
      Array.from({ length: run.final.ticks_used }, (_, i) => i + 1),
      "every tick, in order",
    );
    assert.equal(run.final.top_k[0]?.label, "3", "it reads the drawn 3 as a 3");
    const summary = await page.evaluate<string>(`document.getElementById("summary").textContent`);
    assert.match(summary, /answer3/);
    assert.match(summary, /halt reason/);

    mkdirSync(join(REPO, "out"), { recursive: true });
    writeFileSync(join(REPO, "out", "playground.png"), await page.screenshot());
    // The heatmap: the preprocessed digit in grey, with the attention in hot colours over it.
    assert.ok((await countPixels(page, "heatmap", "r > 150 && g > 120 && b > 100")) > 300, "the digit, light");
    assert.ok((await countPixels(page, "heatmap", "r > 120 && b < 60 && r > g + 20")) > 200, "attention overlay");
    // The chart: the certainty line (white), class lines, the threshold (red, dashed) and the halt tick (yellow).
    assert.ok((await countPixels(page, "chart", "r > 240 && g > 240 && b > 240")) > 100, "certainty line");
    assert.ok((await countPixels(page, "chart", "r > 240 && g > 190 && g < 230 && b < 80")) > 50, "halt tick");
    assert.ok((await countPixels(page, "chart", "r > 200 && g < 80 && b < 80")) > 50, "threshold");

    // Replaying an earlier tick redraws the heatmap from that tick's weights.
    const middle = Math.max(1, Math.ceil(run.final.ticks_used / 2));
    const before = await page.evaluate<string>(`document.getElementById("heatmap").toDataURL()`);
    await page.evaluate(
      `(() => { const s = document.getElementById("tick-slider"); s.value = "${middle}"; s.dispatchEvent(new Event("input")); })()`,
    );
    assert.equal(await page.evaluate<string>(`document.getElementById("tick-label").textContent`), String(middle));
    if (middle !== run.final.ticks_used) {
      assert.notEqual(await page.evaluate<string>(`document.getElementById("heatmap").toDataURL()`), before);
    }
    // The page mid-thought, as the README shows it: tick `middle` of the run replayed.
    writeFileSync(join(REPO, "out", "playground-replay.png"), await page.screenshot());
  });

  it("draws with a finger too", async () => {
    await page.evaluate(`document.getElementById("clear").click()`);
    assert.equal(await countPixels(page, "draw", "r > 200"), 0, "cleared");
    const box = await page.evaluate<{ x: number; y: number; width: number }>(
      `(() => { const r = document.getElementById("draw").getBoundingClientRect(); return { x: r.x, y: r.y, width: r.width }; })()`,
    );
    const scale = box.width / 280;
    const line = along([
      [140, 40],
      [140, 240],
    ]);
    await page.touchStroke(line.map(([x, y]) => [box.x + x * scale, box.y + y * scale] as [number, number]));
    assert.ok(await page.evaluate<boolean>("window.playground.inked"));
    assert.ok((await countPixels(page, "draw", "r > 200")) > 2000, "a vertical stroke, drawn by touch");
  });

  it("shows a refused request as the server words it", async () => {
    await page.evaluate(`document.getElementById("threshold").value = "1.5"`);
    await page.evaluate(`document.getElementById("think").click()`);
    await page.waitFor("window.playground.run?.done", "the refused run to finish");
    const shown = await page.evaluate<string>(`document.getElementById("error").textContent`);
    // The threshold is on the signal picked, the halting head's by default for a model that has one.
    const signal = await page.evaluate<string>(`document.getElementById("signal").value`);
    assert.equal(shown, `INVALID_ARGUMENT: halt_policy.${signal}_threshold must be in (0, 1], got 1.5`);
    await page.evaluate(`document.getElementById("threshold").value = "0.9"`);
  });
});

describe("the playground in headless Chromium, with a maze model", { skip }, () => {
  let root: string;
  let t: TestServer;
  let browser: Chromium;
  let page: Page;
  before(async () => {
    root = mkdtempSync(join(tmpdir(), "ctm-reference-"));
    // A reference-layout maze solver (random weights: the route means nothing, but it has one) and an
    // RGB image for it, as server/test/interop/referenceModels.test.ts uses them.
    execFileSync(process.execPath, ["scripts/py.mjs", "-m", "tests.reference_layouts", root], {
      cwd: REPO,
      stdio: "pipe",
    });
    t = await startTestServer({ modelsDir: join(root, "models"), http: { host: "127.0.0.1", port: 0 } });
    ({ browser, page } = await openPlayground(t));
  });
  after(async () => {
    await browser?.close();
    await t?.close();
  });

  it("picks an image file, and draws the route over the maze and the attention at every tick", async () => {
    await page.evaluate(
      `(() => { const s = document.getElementById("model"); s.value = "maze-ref"; s.dispatchEvent(new Event("change")); })()`,
    );
    const { root: documentNode } = (await page.send("DOM.getDocument")) as { root: { nodeId: number } };
    const { nodeId } = await page.send("DOM.querySelector", { nodeId: documentNode.nodeId, selector: "#file" });
    await page.send("DOM.setFileInputFiles", { nodeId, files: [join(root, "cases", "maze-ref.png")] });
    await page.waitFor("window.playground.image", "the chosen file to load");
    await page.evaluate(`document.getElementById("think").click()`);
    await page.waitFor("window.playground.run?.done", "the run to finish", 60_000);
    const run = await page.evaluate<{ error: unknown; positions: number; shape: number[] }>(
      `({ error: window.playground.error, positions: window.playground.run.final?.positions.length, shape: window.playground.run.ticks[0]?.attention_shape })`,
    );
    assert.equal(run.error, undefined);
    assert.equal(run.positions, 6, "a route of 6 moves");
    assert.equal(run.shape.length, 3, "attention over a 2-D token grid");
    assert.ok((await countPixels(page, "heatmap", "r < 40 && g > 200 && b > 230")) > 20, "the route, in cyan");
    assert.match(
      await page.evaluate<string>(`document.getElementById("positions").textContent`),
      /^((up|down|left|right|wait) ?){6}$/,
    );
    writeFileSync(join(REPO, "out", "playground-maze.png"), await page.screenshot());
  });
});
