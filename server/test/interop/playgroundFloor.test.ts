/**
 * The playground's floor, in headless Chromium: a target with a floor is sent as min_target_accuracy,
 * and an answer that load lowered says so in the summary, with the guarantee that holds for it and
 * what was asked. The server runs with a 1 ms latency objective, which no full-depth run meets, so
 * every request that gives a floor is lowered as far as it allows. Skipped, saying so, where Chromium
 * is not installed.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  MODEL_NAME,
  type Sample,
  samples,
  startTestServer,
  type TestServer,
} from "../../../tools/harness/testServer.ts";
import { type CertifiedLadder, certifiedLadder } from "../support/certifiedLadder.ts";
import type { Chromium, Page } from "../support/headlessChromium.ts";
import { openPlayground, withoutChromium } from "../support/playgroundPage.ts";

const skip = withoutChromium;

const click = (selector: string) => `document.querySelector(${JSON.stringify(selector)}).click()`;
const set = (id: string, value: string) =>
  `document.getElementById(${JSON.stringify(id)}).value = ${JSON.stringify(value)}`;

describe("the playground's floor, in headless Chromium", { skip }, () => {
  let t: TestServer;
  let browser: Chromium;
  let page: Page;
  let ladder: CertifiedLadder;

  before(async () => {
    t = await startTestServer({ latencyObjectiveMs: 1, http: { host: "127.0.0.1", port: 0 } });
    ladder = certifiedLadder(await t.client.getModel(MODEL_NAME), "accuracy", 0.95);
    // The controller plans with tick runs it has seen (the first at a batch size only plans memory): one
    // full-depth request measures them, where a default one may halt at its first tick.
    await t.client.classify({
      model: MODEL_NAME,
      image: { data: (samples()[0] as Sample).png },
      halt_policy: { certainty_threshold: 1 },
    });
    ({ browser, page } = await openPlayground(t));
    await page.waitFor(`document.querySelector('#samples img')?.complete`, "the samples");
    await page.evaluate(click("#samples img"));
    await page.waitFor("window.playground.image", "the sample to load");
  });
  after(async () => {
    await browser?.close();
    await t?.close();
  });

  const think = async () => {
    await page.evaluate(click("#think"));
    await page.waitFor("window.playground.run?.done", "the run to finish", 60_000);
    assert.equal(await page.evaluate("window.playground.error"), undefined);
    return page.evaluate<string>(`document.getElementById("summary").textContent`);
  };

  it("sends the floor and shows the lowered answer's guarantee, what was asked and the floor", async () => {
    await page.evaluate(click('input[name="halt"][value="accuracy"]'));
    await page.evaluate(set("accuracy", String(ladder.top.target)));
    await page.evaluate(set("floor", String(ladder.floor)));
    const summary = await think();
    const guarantee = await page.evaluate<{ lowered_by_load: boolean; target: number }>(
      "window.playground.run.final.guarantee",
    );
    assert.equal(guarantee.lowered_by_load, true);
    assert.equal(guarantee.target, ladder.deepest.target);
    assert.match(
      summary,
      new RegExp(
        `guaranteemet: accuracy ≥ ${ladder.deepest.target} with confidence 0\\.95, on ${ladder.signal === "HALT_SIGNAL_HALT" ? "the halt signal" : "certainty"} \\(\\d+ calibration items\\); lowered by load from ${ladder.top.target} \\(threshold ${ladder.top.threshold}\\), floor ${ladder.floor}`,
      ),
    );
    const colour = await page.evaluate<string>(`getComputedStyle(document.querySelector("#summary .lowered")).color`);
    assert.equal(colour, "rgb(255, 165, 2)");
  });

  it("without a floor the same target is never lowered", async () => {
    await page.evaluate(set("floor", ""));
    const summary = await think();
    assert.equal(await page.evaluate("window.playground.run.final.guarantee.lowered_by_load"), false);
    assert.match(summary, new RegExp(`guaranteemet: accuracy ≥ ${ladder.top.target} with confidence 0\\.95`));
    assert.doesNotMatch(summary, /lowered by load/);
  });
});
