import assert from "node:assert/strict";
import { describe, it } from "node:test";
import sharp from "sharp";
import { barChartSvg, gridSvg, linearTicks, lineChartSvg, logTicks, xmlText } from "../plot/svgChart.ts";

describe("svgChart", () => {
  it("puts linear ticks on round steps", () => {
    assert.deepEqual(linearTicks(0, 10), [0, 2, 4, 6, 8, 10]);
    assert.deepEqual(linearTicks(0.3, 0.95), [0.4, 0.6, 0.8]);
    assert.deepEqual(linearTicks(5, 5), [5]);
  });

  it("puts log ticks on 1-2-5 over a short range and on powers of ten over a long one", () => {
    assert.deepEqual(logTicks(1, 100), [1, 2, 5, 10, 20, 50, 100]);
    assert.deepEqual(logTicks(0.5, 2e5), [1, 10, 100, 1000, 10000, 100000]);
  });

  it("labels ticks finer than a tenth as they are", () => {
    const labels = (svg: string) => [...svg.matchAll(/text-anchor="end">([^<]*)</g)].map((m) => m[1]);
    const chart = (y: { label: string; log?: boolean }, values: number[]) =>
      lineChartSvg(
        { title: "t", x: { label: "x" }, y, series: [{ label: "s", points: values.map((v, i) => ({ x: i, y: v })) }] },
        { width: 400, height: 300 },
      );
    // Steps of 0.05 on a linear axis, and 1-2-5 steps below 0.1 on a log one: no two labels alike.
    assert.deepEqual(labels(chart({ label: "ECE" }, [0, 0.12])), ["0", "0.05", "0.1"]);
    assert.deepEqual(labels(chart({ label: "s", log: true }, [0.0015, 0.04])), ["0.002", "0.005", "0.01", "0.02"]);
  });

  it("escapes text", () => {
    assert.equal(xmlText(`a<b & "c"`), "a&#60;b &#38; &#34;c&#34;");
    // An apostrophe too: a label may land in a single-quoted attribute (the copies that skipped it
    // were only safe while every attribute was double-quoted).
    assert.equal(xmlText(`the model's <answer>`), "the model&#39;s &#60;answer&#62;");
  });

  it("renders a grid of line and bar charts that librsvg accepts", async () => {
    const svg = gridSvg("t <1>", { width: 400, height: 300 }, 2, [
      (frame) =>
        lineChartSvg(
          {
            title: "lines",
            x: { label: "x", log: true },
            y: { label: "y", zero: true },
            series: [
              {
                label: "a",
                points: [
                  { x: 1, y: 1, note: "t=0.5" },
                  { x: 16, y: 3 },
                ],
              },
              { label: "b", dashed: true, points: [{ x: 4, y: Number.NaN }] },
            ],
          },
          frame,
        ),
      (frame) =>
        barChartSvg({ title: "bars", x: { label: "tick" }, y: { label: "n" }, bars: [0, 3, 1], firstX: 1 }, frame),
    ]);
    const meta = await sharp(Buffer.from(svg)).png().metadata();
    assert.equal(meta.width, 800);
    assert.equal(meta.height, 332);
  });
});
