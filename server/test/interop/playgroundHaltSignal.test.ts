/**
 * The playground with a model that has a halting head and one that has not (server/test/fixtures), in
 * headless Chromium: the signal picker offers the halt signal only where there is one and starts on the
 * signal targets are certified on; a run on the halt signal sends its threshold on halt, draws the halt
 * signal per tick in its own colour beside certainty, and says which signal it halted on. Skipped,
 * saying so, where Chromium is not installed.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { HALTING_MODEL, HEADLESS_MODEL, haltingModelsDir } from "../../../tools/harness/haltingModel.ts";
import { startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";
import type { Chromium, Page } from "../support/headlessChromium.ts";
import { openPlayground, withoutChromium } from "../support/playgroundPage.ts";

const skip = withoutChromium;

const click = (selector: string) => `document.querySelector(${JSON.stringify(selector)}).click()`;

describe("the playground's halt signal, in headless Chromium", { skip }, () => {
  let t: TestServer;
  let browser: Chromium;
  let page: Page;

  async function selectModel(name: string): Promise<void> {
    await page.evaluate(
      `(() => { const s = document.getElementById("model"); s.value = ${JSON.stringify(name)}; s.dispatchEvent(new Event("change")); })()`,
    );
    await page.waitFor(`window.playground.model?.name === ${JSON.stringify(name)}`, `model ${name}`);
  }

  const signalPicker = () =>
    page.evaluate<{ value: string; haltDisabled: boolean }>(
      `(() => { const s = document.getElementById("signal"); return { value: s.value, haltDisabled: s.querySelector('option[value="halt"]').disabled }; })()`,
    );

  before(async () => {
    t = await startTestServer({ modelsDir: haltingModelsDir(), http: { host: "127.0.0.1", port: 0 } });
    ({ browser, page } = await openPlayground(t));
  });
  after(async () => {
    await browser?.close();
    await t?.close();
  });

  it("offers the halt signal only for a model with a halting head, starting on the one targets are certified on", async () => {
    await selectModel(HEADLESS_MODEL);
    assert.deepEqual(await signalPicker(), { value: "certainty", haltDisabled: true });
    await selectModel(HALTING_MODEL);
    assert.deepEqual(await signalPicker(), { value: "halt", haltDisabled: false });
  });

  it("halts on the halt signal, draws it per tick in its own colour, and says which signal it halted on", async () => {
    await page.waitFor(`document.querySelector('#samples img')?.complete`, "the samples");
    await page.evaluate(click("#samples img"));
    await page.waitFor("window.playground.image", "the sample to load");
    await page.evaluate(`document.getElementById("threshold").value = "0.85"`);
    await page.evaluate(click("#think"));
    await page.waitFor("window.playground.run?.done", "the run to finish", 60_000);
    assert.equal(await page.evaluate("window.playground.error"), undefined);
    const final = await page.evaluate<{ halt_signal: string; threshold_used: number; halt: number }>(
      "window.playground.run.final",
    );
    assert.equal(final.halt_signal, "HALT_SIGNAL_HALT");
    assert.equal(final.threshold_used, 0.85);
    const ticks = await page.evaluate<{ halt?: number }[]>("window.playground.run.ticks");
    assert.ok(ticks.length > 0 && ticks.every((tick) => typeof tick.halt === "number"));

    const legend = await page.evaluate<{ text: string; color: string }[]>(
      `[...document.querySelectorAll("#legend span")].map((s) => ({ text: s.textContent, color: s.style.getPropertyValue("--swatch") }))`,
    );
    const colors = await page.evaluate<{ haltSignal: string; classes: string[] }>("window.playground.colors");
    assert.equal(legend.find((i) => i.text === "halt signal")?.color, colors.haltSignal);
    assert.ok(
      legend.some((i) => i.text === "threshold (halt signal)"),
      JSON.stringify(legend),
    );
    assert.equal(new Set(legend.map((i) => i.color)).size, legend.length, "every line its own colour");
    assert.ok(!colors.classes.includes(colors.haltSignal));
    // The line itself, in that colour (#00e5ff).
    const drawn = await page.evaluate<number>(`(() => {
      const c = document.getElementById("chart");
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] < 40 && d[i + 1] > 200 && d[i + 2] > 230) n++;
      return n;
    })()`);
    assert.ok(drawn > 100, `${drawn} pixels of the halt signal's line`);
    const summary = await page.evaluate<string>(`document.getElementById("summary").textContent`);
    assert.match(summary, /halt signal0\.\d{3}/);
    assert.match(summary, /threshold used0\.850 on halt signal/);
  });
});
