/**
 * The playground with both shipped models, as `npm start` serves them, in headless Chromium: the page
 * opens on the model it is drawn for (mnist-ctm, though maze-ctm sorts first) and says what each model
 * takes and how it did on its held-out test split, names the moves in a maze sample's tooltip, clears
 * the view when the model changes, keeps its three columns with a long route as the answer, says whether
 * a target's guarantee was met, draws no class in the halt line's colour, and has a favicon. Skipped,
 * saying so, where Chromium is not installed.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { MODEL_NAME, REPO, startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";
import { parseVersionPolicies } from "../../src/engine/versionPolicy.ts";
import type { Chromium, Page } from "../support/headlessChromium.ts";
import { versionedModelsDir } from "../support/modelRepository.ts";
import { openPlayground, withoutChromium } from "../support/playgroundPage.ts";

const skip = withoutChromium;

/** The two shipped models, and only those (other folders under models/ cannot interfere). */
function shippedModels(): string {
  const dir = mkdtempSync(join(tmpdir(), "ctm-shipped-"));
  for (const name of ["maze-ctm", "mnist-ctm"]) symlinkSync(join(REPO, "models", name), join(dir, name));
  return dir;
}

/**
 * The line under the picker, written out from the model's manifest.json: its accuracy on the held-out
 * test split at the most certain tick and, for a route, the share of mazes solved there.
 */
function testMetricsLine(name: string): string {
  const { metrics } = JSON.parse(readFileSync(join(REPO, "models", name, "1", "manifest.json"), "utf8")) as {
    metrics: {
      test: { count: number; accuracy_most_certain: number; signals: { certainty: { solved_full_run?: number } } };
    };
  };
  const { count, accuracy_most_certain: accuracy, signals } = metrics.test;
  const percent = (fraction: number) => `${Number((100 * fraction).toFixed(2))}%`;
  const heldOut = `(${count.toLocaleString("en-US")} held-out)`;
  const solved = signals.certainty.solved_full_run;
  return solved === undefined
    ? `test: ${percent(accuracy)} right ${heldOut}`
    : `test: ${percent(accuracy)} of moves right, ${percent(solved)} of mazes solved ${heldOut}`;
}

const click = (selector: string) => `document.querySelector(${JSON.stringify(selector)}).click()`;

interface Legend {
  text: string;
  color: string;
}

describe("the playground with both shipped models, in headless Chromium", { skip }, () => {
  let t: TestServer;
  let browser: Chromium;
  let page: Page;

  /** Picks a sample by its file name, thinks, and waits for the run to end. */
  async function thinkAbout(file: string): Promise<void> {
    await page.waitFor(`document.querySelector('#samples img[alt^="sample ${file}"]')?.complete`, `sample ${file}`);
    // The image it had before (a new one is a new array, even for the same sample).
    await page.evaluate("window.previousImage = window.playground.image");
    await page.evaluate(click(`#samples img[alt^="sample ${file}"]`));
    await page.waitFor(
      "window.playground.image && window.playground.image !== window.previousImage",
      `${file} to load`,
    );
    await page.evaluate(click("#think"));
    await page.waitFor("window.playground.run?.done", "the run to finish", 60_000);
    assert.equal(await page.evaluate("window.playground.error"), undefined);
  }

  async function selectModel(name: string): Promise<void> {
    await page.evaluate(
      `(() => { const s = document.getElementById("model"); s.value = ${JSON.stringify(name)}; s.dispatchEvent(new Event("change")); })()`,
    );
    await page.waitFor(`window.playground.model?.name === ${JSON.stringify(name)}`, `model ${name}`);
  }

  const legend = () =>
    page.evaluate<Legend[]>(
      `[...document.querySelectorAll("#legend span")].map((s) => ({ text: s.textContent, color: s.style.getPropertyValue("--swatch") }))`,
    );

  before(async () => {
    t = await startTestServer({ modelsDir: shippedModels(), http: { host: "127.0.0.1", port: 0 } });
    ({ browser, page } = await openPlayground(t));
  });
  after(async () => {
    await browser?.close();
    await t?.close();
  });

  it("opens on the digit model, and says which input each model takes and how it did on its test split", async () => {
    const options = await page.evaluate<{ value: string; title: string }[]>(
      `[...document.getElementById("model").options].map((o) => ({ value: o.value, title: o.title }))`,
    );
    assert.deepEqual(
      options.map((o) => o.value),
      ["maze-ctm", "mnist-ctm"],
      "the server lists maze-ctm first",
    );
    assert.equal(await page.evaluate("window.playground.model.name"), "mnist-ctm");
    assert.match(options[0]?.title ?? "", /^a maze \(15x15, colour\): pick a sample or drop an image$/);
    assert.match(options[1]?.title ?? "", /^a digit \(28x28 grey\): draw it/);
    assert.match(await page.evaluate<string>(`document.getElementById("input-kind").textContent`), /Takes a digit/);
    const line = await page.evaluate<string>(`document.getElementById("test-metrics").textContent`);
    assert.equal(line, testMetricsLine("mnist-ctm"));
    assert.match(line, /^test: \d+(\.\d+)?% right \(\d[\d,]* held-out\)$/);
  });

  it("says whether a target accuracy's guarantee was met", async () => {
    await page.evaluate(click('input[name="halt"][value="accuracy"]'));
    await thinkAbout("0003_3.png");
    const guarantee = await page.evaluate<{ text: string; className: string } | null>(
      `(() => { const dt = [...document.querySelectorAll("#summary dt")].find((d) => d.textContent === "guarantee"); return dt ? { text: dt.nextElementSibling.textContent, className: dt.nextElementSibling.className } : null; })()`,
    );
    const result = await page.evaluate<{ met: boolean; note: string }>("window.playground.run.final.guarantee");
    assert.ok(guarantee, "a guarantee row in the summary");
    assert.match(guarantee.text, /^(met|NOT met): accuracy ≥ 0\.95 with confidence 0\.95/);
    assert.equal(guarantee.text.startsWith("met"), result.met, "as the server decided it");
    assert.equal(guarantee.className, result.met ? "met" : "not-met");
    await page.evaluate(click('input[name="halt"][value="threshold"]'));
  });

  it("draws p(5) and the halt line in different colours", async () => {
    await page.evaluate(`document.getElementById("min-ticks").value = "15"`);
    await thinkAbout("0005_5.png");
    await page.evaluate(`document.getElementById("min-ticks").value = "0"`);
    const items = await legend();
    const colorOf = (text: string) => items.find((i) => i.text === text)?.color;
    assert.ok(colorOf("p(5)"), `p(5) is charted: ${JSON.stringify(items)}`);
    assert.ok(colorOf("halt tick"));
    assert.notEqual(colorOf("p(5)"), colorOf("halt tick"));
    assert.equal(
      new Set(items.map((i) => i.color)).size,
      items.length,
      `every line its own colour: ${JSON.stringify(items)}`,
    );
    // Whichever classes a run happens to chart: no class has a colour the chart keeps for itself.
    const colors = await page.evaluate<{
      classes: string[];
      certainty: string;
      threshold: string;
      halt: string;
      haltSignal: string;
    }>("window.playground.colors");
    for (const reserved of [colors.certainty, colors.threshold, colors.halt, colors.haltSignal]) {
      assert.ok(!colors.classes.includes(reserved), `a class is drawn in ${reserved}`);
    }
  });

  it("clears the answer, heatmap and chart when the model changes, and names the moves in maze tooltips", async () => {
    assert.ok(await page.evaluate("window.playground.run?.final"), "a run is on screen");
    await selectModel("maze-ctm");
    assert.equal(await page.evaluate("window.playground.run"), undefined);
    assert.equal(await page.evaluate(`document.getElementById("summary").textContent`), "");
    assert.deepEqual(
      (await legend()).map((i) => i.text),
      [],
      "no lines left on the chart",
    );
    const lit = await page.evaluate<number>(`(() => {
      let n = 0;
      for (const id of ["heatmap", "chart"]) {
        const c = document.getElementById(id);
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] > 200 && d[i + 2] > 200) n++;
      }
      return n;
    })()`);
    assert.equal(lit, 0, "neither the old input nor the certainty line is drawn");
    assert.equal(await page.evaluate("window.playground.image"), undefined, "a digit is no input for a maze model");
    assert.equal(await page.evaluate("window.playground.inked"), false);
    assert.match(await page.evaluate<string>(`document.getElementById("input-kind").textContent`), /Takes a maze/);
    const line = await page.evaluate<string>(`document.getElementById("test-metrics").textContent`);
    assert.equal(line, testMetricsLine("maze-ctm"));
    assert.match(line, /^test: [\d.]+% of moves right, [\d.]+% of mazes solved \(\d[\d,]* held-out\)$/);

    const titles = await page.evaluate<string[]>(`[...document.querySelectorAll("#samples img")].map((i) => i.title)`);
    assert.ok(titles.length > 0);
    const MOVE = "(up|down|left|right|wait)( ×\\d+)?";
    for (const title of titles) assert.match(title, new RegExp(`^sample \\d+\\.png: ${MOVE}(, ${MOVE})*$`));
  });

  it("keeps its three columns with a long route as the answer", async () => {
    const top = () =>
      page.evaluate<number[]>(
        `["input-panel", "settings-panel", "attention-panel"].map((id) => Math.round(document.getElementById(id).getBoundingClientRect().top))`,
      );
    const before = await top();
    await thinkAbout("0000.png");
    const answer = await page.evaluate<{ text: string; right: number; panelRight: number; className: string }>(
      `(() => { const dd = document.querySelector("#summary dd.answer"); const panel = document.getElementById("settings-panel").getBoundingClientRect(); return { text: dd.textContent, right: dd.getBoundingClientRect().right, panelRight: panel.right, className: dd.className }; })()`,
    );
    assert.ok(answer.text.split(" ").length >= 10, `a long route: ${answer.text}`);
    assert.equal(answer.className, "answer route");
    assert.ok(answer.right <= answer.panelRight, "the route wraps inside its panel");
    const after = await top();
    assert.deepEqual(after, before, "the panels stay where they were");
    assert.equal(new Set(after).size, 1, "one row");
    mkdirSync(join(REPO, "out"), { recursive: true });
    writeFileSync(join(REPO, "out", "playground-maze-ctm.png"), await page.screenshot());
  });

  it("has a favicon of its own, so that the browser asks the server for none", async () => {
    const icon = await page.evaluate<{ href: string; width: number }>(`(async () => {
      const link = document.querySelector('link[rel="icon"]');
      const img = new Image();
      img.src = link.href;
      await img.decode();
      return { href: link.href, width: img.naturalWidth };
    })()`);
    assert.match(icon.href, /^data:image\/svg\+xml,/);
    assert.ok(icon.width > 0, "the icon decodes");
  });
});

describe("the playground with two versions of a model served side by side, in headless Chromium", { skip }, () => {
  let t: TestServer;
  let browser: Chromium;
  let page: Page;
  before(async () => {
    t = await startTestServer({
      modelsDir: versionedModelsDir([1, 2]),
      modelControl: { mode: "none", pollMs: 0, loadModels: [], versionPolicies: parseVersionPolicies("latest:2", "-") },
      http: { host: "127.0.0.1", port: 0 },
    });
    ({ browser, page } = await openPlayground(t));
  });
  after(async () => {
    await browser?.close();
    await t?.close();
  });

  it("lists each version once, and answers from the version picked", async () => {
    const options = await page.evaluate<{ value: string; text: string }[]>(
      `[...document.querySelectorAll("#model option")].map((o) => ({ value: o.value, text: o.textContent }))`,
    );
    assert.deepEqual(options.map((o) => o.text).sort(), [`${MODEL_NAME} v1`, `${MODEL_NAME} v2`]);
    assert.equal(new Set(options.map((o) => o.value)).size, 2, "each version can be picked");
    for (const version of [1, 2]) {
      const option = options.find((o) => o.text === `${MODEL_NAME} v${version}`) as { value: string };
      await page.evaluate(
        `(() => { const s = document.getElementById("model"); s.value = ${JSON.stringify(option.value)}; s.dispatchEvent(new Event("change")); })()`,
      );
      await page.waitFor(`window.playground.model?.version === ${version}`, `version ${version}`);
      await page.waitFor(`document.querySelector('#samples img')?.complete`, "the samples");
      await page.evaluate(click("#samples img"));
      await page.waitFor("window.playground.image", "the sample to load");
      await page.evaluate(click("#think"));
      await page.waitFor("window.playground.run?.done", "the run to finish", 60_000);
      assert.equal(await page.evaluate("window.playground.error"), undefined);
      assert.equal(await page.evaluate("window.playground.run.final.version"), version);
    }
  });
});
