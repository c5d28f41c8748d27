/**
 * A blank image (white, black, fully transparent, one uniform grey, or paper with only specks on it)
 * is refused with INVALID_ARGUMENT saying the image has no ink and why, instead of being answered
 * with a confident guess; a digit on the same paper is still answered.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import sharp from "sharp";
import { digitPhoto } from "../../../tools/harness/index.ts";
import {
  failure,
  MODEL_NAME,
  type Sample,
  samples,
  startTestServer,
  type TestServer,
} from "../../../tools/harness/testServer.ts";

const plain = (channels: 3 | 4, background: string | { r: number; g: number; b: number; alpha: number }) =>
  sharp({ create: { width: 64, height: 48, channels, background } })
    .png()
    .toBuffer();

describe("a blank image", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.close());

  it("is refused with INVALID_ARGUMENT naming why it has no ink, for every kind of blank", async () => {
    // White paper with a few isolated dark specks: contrast, but no stroke.
    const specks = Buffer.alloc(64 * 48, 255);
    for (const at of [100, 900, 2000, 3000]) specks[at] = 0;
    const cases: [string, Buffer, RegExp][] = [
      ["white", await plain(3, "#ffffff"), /every pixel is white \(grey level 255 of 255; transparent/],
      ["black", await plain(3, "#000000"), /every pixel is black \(grey level 0 of 255\)$/],
      ["transparent", await plain(4, { r: 0, g: 0, b: 0, alpha: 0 }), /every pixel is white/],
      ["uniform grey", await plain(3, "#808080"), /every pixel is the same grey \(level 128 of 255\)$/],
      [
        "specks",
        await sharp(specks, { raw: { width: 64, height: 48, channels: 1 } })
          .png()
          .toBuffer(),
        /nothing in it stands out from the background as a stroke/,
      ],
    ];
    for (const [label, data, reason] of cases) {
      const refusals = await Promise.all([
        failure(t.client.classify({ model: MODEL_NAME, image: { data } })),
        failure(t.client.collect({ model: MODEL_NAME, image: { data } })),
      ]);
      for (const refused of refusals) {
        assert.equal(refused.code, grpc.status.INVALID_ARGUMENT, `${label}: ${refused.details}`);
        assert.match(refused.details, /^input\.image\.data has no ink: /, label);
        assert.match(refused.details, reason, label);
      }
    }
  });

  it("does not refuse a digit on the same paper", async () => {
    const sample = samples()[0] as Sample;
    const photo = await digitPhoto(sample.png, {
      size: 60,
      canvas: { width: 80, height: 80 },
      offset: { x: 10, y: 10 },
      format: "png",
    });
    const answer = await t.client.classify({ model: MODEL_NAME, image: { data: photo } });
    assert.equal(answer.top_k[0]?.index, sample.label);
  });
});
