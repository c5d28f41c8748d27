import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ProgressBar } from "../src/progressBar.ts";

function stream(isTTY: boolean) {
  const written: string[] = [];
  return { written, isTTY, columns: 80, write: (text: string) => written.push(text) > 0 };
}

describe("ProgressBar", () => {
  it("redraws one line in place on a terminal and clears it before a lasting line", () => {
    const out = stream(true);
    const bar = new ProgressBar(out, 4, true);
    bar.update(1, "measure", "unary c=4 t=0.9", 0.5, "10 done");
    const [drawn] = out.written;
    assert.ok(drawn?.startsWith("\r[=========>"), drawn);
    assert.match(drawn ?? "", /2\/4 unary c=4 t=0\.9 measure 50% 10 done/);
    assert.equal(drawn?.length, 80, "padded to the terminal width less one");
    bar.log("[2/4] done");
    assert.deepEqual(out.written.slice(1), ["\r\x1b[2K", "[2/4] done\n"]);
  });

  it("draws no bar off a terminal or when disabled, but still lists finished points", () => {
    for (const [isTTY, enabled] of [
      [false, true],
      [true, false],
    ] as const) {
      const out = stream(isTTY);
      const bar = new ProgressBar(out, 2, enabled);
      bar.update(0, "warm-up", "p", 0.3, "");
      bar.log("point");
      bar.done();
      assert.deepEqual(out.written, ["point\n"]);
    }
  });
});
