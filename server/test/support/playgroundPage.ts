/**
 * The playground in headless Chromium, as the browser tests open it: whether they can run here, and a
 * page on a test server's playground once its model list has loaded.
 */

import type { TestServer } from "../../../tools/harness/testServer.ts";
import { Chromium, findChromium, type Page } from "./headlessChromium.ts";

const chromium = findChromium();

/** `describe`'s skip: false where Chromium is installed, else what to install (never a silent skip). */
export const withoutChromium = chromium
  ? false
  : "Chromium is not installed: apt-get install -y chromium (or set CHROMIUM_PATH) to run the browser test";

export async function openPlayground(t: TestServer): Promise<{ browser: Chromium; page: Page }> {
  const browser = Chromium.launch(chromium as string);
  const page = await browser.newPage(1280, 1040);
  await page.navigate(`http://127.0.0.1:${t.server.httpPort}/`);
  await page.waitFor("window.playground?.model?.name", "the model list");
  return { browser, page };
}
