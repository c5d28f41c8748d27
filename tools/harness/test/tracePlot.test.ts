import assert from "node:assert/strict";
import { describe, it } from "node:test";
import sharp from "sharp";
import { routeSvg } from "../plot/routePlot.ts";
import { PALETTE } from "../plot/svgChart.ts";
import { HALT_COLOUR, traceSvg } from "../plot/tracePlot.ts";

// A model's name and its class labels come from its manifest, so they reach the SVG as any text can.
const AWKWARD = `it's <3 & "quoted"`;
const ESCAPED = "it&#39;s &#60;3 &#38; &#34;quoted&#34;";

describe("tracePlot", () => {
  const svg = traceSvg({
    title: AWKWARD,
    certainty: [0.2, 0.6, 0.95],
    halt: [0.1, 0.5, 0.99],
    signal: "halt",
    classes: [
      { label: AWKWARD, values: [0.3, 0.7, 0.97] },
      { label: "7", values: [0.2, 0.1, 0.01] },
    ],
    threshold: 0.9,
    answerTick: 3,
  });

  it("escapes the title and the class labels as every other plot does", () => {
    assert.ok(svg.includes(`>${ESCAPED}<`), "title");
    assert.ok(svg.includes(`>p(${ESCAPED})<`), "legend");
    assert.ok(!svg.includes(AWKWARD));
  });

  it("draws the classes in the shared palette and the halt signal apart from it", () => {
    assert.ok(svg.includes(`stroke="${PALETTE[0]}"`));
    assert.ok(svg.includes(`stroke="${PALETTE[1]}"`));
    assert.ok(svg.includes(`stroke="${HALT_COLOUR}"`));
    assert.ok(!(PALETTE as readonly string[]).includes(HALT_COLOUR));
  });

  it("is an SVG librsvg accepts", async () => {
    const png = await sharp(Buffer.from(svg)).png().toBuffer();
    assert.equal((await sharp(png).metadata()).width, 800);
  });
});

describe("routePlot", () => {
  it("escapes the title", async () => {
    const side = 4;
    const svg = routeSvg(
      {
        title: AWKWARD,
        pixels: new Uint8Array(side * side * 3).fill(255),
        width: side,
        height: side,
        ticks: [{ tick: 1, certainty: 0.5, moves: ["right", "down"] }],
        answerTick: 1,
      },
      false,
    );
    assert.ok(svg.includes(`>${ESCAPED}<`));
    assert.ok(!svg.includes(AWKWARD));
    await sharp(Buffer.from(svg)).png().toBuffer();
  });
});
