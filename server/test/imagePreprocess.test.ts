/**
 * Image preprocessing with sharp, exactly as the manifest says, against real images: the model's
 * MNIST samples, the golden fixtures' inputs (computed in Python), and renderings of the samples as
 * dark ink on paper.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import sharp from "sharp";
import { parseConfig, type ServerConfig } from "../src/config.ts";
import type { ImageInput } from "../src/model/manifest.ts";
import { loadModelFolder } from "../src/model/modelFolder.ts";
import { ImageDecodeError, preprocessImage } from "../src/runtime/imagePreprocess.ts";
import { digitPhoto } from "./support/digitPhoto.ts";
import { type GoldenCase, modelDir, readModelJson, type Sample, samples } from "./support/testServer.ts";

/** The server's default limits. */
const { limits } = parseConfig([], {}) as ServerConfig;
const LIMITS = { maxPixels: limits.maxImagePixels, maxSide: limits.maxImageSide, formats: limits.imageFormats };

/** One grey level (of 255), in normalised units. */
let greyLevel: number;
let spec: ImageInput;

const maxDifference = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
  return worst;
};

/** The sample as the model saw it in training: raw pixels, normalised. */
async function normalisedPixels(png: Buffer): Promise<Float32Array> {
  const pixels = await sharp(png).greyscale().raw().toBuffer();
  const [mean, std] = [spec.normalize.mean[0] as number, spec.normalize.std[0] as number];
  return Float32Array.from(pixels, (p) => (p / 255 - mean) / std);
}

function correlation(a: Float32Array, b: Float32Array): number {
  const mean = (x: Float32Array) => x.reduce((s, v) => s + v, 0) / x.length;
  const [ma, mb] = [mean(a), mean(b)];
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += ((a[i] as number) - ma) * ((b[i] as number) - mb);
    aa += ((a[i] as number) - ma) ** 2;
    bb += ((b[i] as number) - mb) ** 2;
  }
  return ab / Math.sqrt(aa * bb);
}

describe("mnist-digit preprocessing", () => {
  let sampleList: Sample[];
  before(() => {
    const image = loadModelFolder(modelDir()).manifest.input.image;
    assert.ok(image && image.preprocess === "mnist-digit", "the shipped model takes mnist-digit images");
    spec = image;
    greyLevel = 1 / 255 / (spec.normalize.std[0] as number);
    sampleList = samples();
  });

  it("reproduces the golden fixtures' inputs from their sample images to within a grey level", async () => {
    const golden = readModelJson<{ cases: (GoldenCase & { sample?: string })[] }>("golden.json");
    const withSamples = golden.cases.filter((c) => c.sample);
    assert.ok(withSamples.length > 0, "the fixtures name their sample images");
    for (const c of withSamples) {
      const sample = sampleList.find((s) => join("samples", s.file) === c.sample) as Sample;
      const ours = await preprocessImage(sample.png, spec, LIMITS);
      const worst = maxDifference(ours, c.input);
      assert.ok(worst <= greyLevel, `${c.sample}: ${worst / greyLevel} grey levels off`);
    }
  });

  it("leaves images that are already MNIST-like (nearly) as they are", async () => {
    // Re-centring can move a digit by a pixel and re-fitting can drop a stray speck, so not every
    // sample comes back bit for bit; nearly all do, and on average they are well within a grey level.
    const checked = sampleList.slice(0, 100);
    let unchanged = 0;
    let difference = 0;
    for (const sample of checked) {
      const ours = await preprocessImage(sample.png, spec, LIMITS);
      const reference = await normalisedPixels(sample.png);
      if (maxDifference(ours, reference) <= 3 * greyLevel) unchanged++;
      for (let i = 0; i < ours.length; i++) difference += Math.abs((ours[i] as number) - (reference[i] as number));
    }
    const meanGreyLevels = difference / (checked.length * spec.width * spec.height) / greyLevel;
    assert.ok(unchanged >= 0.9 * checked.length, `${unchanged} of ${checked.length} samples came back unchanged`);
    assert.ok(meanGreyLevels < 1, `samples moved by ${meanGreyLevels.toFixed(2)} grey levels on average`);
  });

  it("turns a dark digit on uneven paper, at another size and place, back into the MNIST digit", async () => {
    const renderings = [
      { size: 150, canvas: { width: 400, height: 300 }, offset: { x: 220, y: 30 }, format: "jpeg" as const },
      { size: 56, canvas: { width: 120, height: 90 }, offset: { x: 4, y: 30 }, format: "png" as const },
      { size: 300, canvas: { width: 320, height: 480 }, offset: { x: 10, y: 160 }, format: "webp" as const },
    ];
    for (const sample of sampleList.slice(0, 20)) {
      const reference = await normalisedPixels(sample.png);
      for (const rendering of renderings) {
        const photo = await digitPhoto(sample.png, rendering);
        const ours = await preprocessImage(photo, spec, LIMITS);
        const r = correlation(ours, reference);
        // Strokes thicken or thin by a fraction of a pixel and the centre moves by at most one: the
        // shapes must still agree far beyond chance.
        assert.ok(r > 0.5, `${sample.file} as ${rendering.format} ${rendering.size}px: correlation ${r.toFixed(3)}`);
      }
    }
  });

  it("reads dark ink on a transparent background as ink on white paper", async () => {
    const sample = sampleList[0] as Sample;
    const ink = await sharp(sample.png).greyscale().raw().toBuffer();
    const rgba = Buffer.alloc(ink.length * 4);
    ink.forEach((v, i) => {
      rgba.writeUInt32BE(v, i * 4); // black ink whose alpha is the digit
    });
    const transparent = await sharp(rgba, { raw: { width: 28, height: 28, channels: 4 } })
      .png()
      .toBuffer();
    const ours = await preprocessImage(transparent, spec, LIMITS);
    assert.ok(maxDifference(ours, await normalisedPixels(sample.png)) <= 3 * greyLevel);
  });

  it("reads the first frame of an animated GIF", async () => {
    const [first, second] = sampleList as [Sample, Sample];
    const page = { size: 60, canvas: { width: 80, height: 80 }, offset: { x: 10, y: 10 }, format: "png" as const };
    const [one, two] = [await digitPhoto(first.png, page), await digitPhoto(second.png, page)];
    const animated = await sharp([one, two], { join: { animated: true } })
      .gif()
      .toBuffer();
    assert.equal((await sharp(animated, { pages: -1 }).metadata()).pages, 2);
    const ours = await preprocessImage(animated, spec, LIMITS);
    // GIF's palette dithers the pixels, so compare shapes: the first frame's, not the second's.
    const first_ = correlation(ours, await preprocessImage(one, spec, LIMITS));
    const second_ = correlation(ours, await preprocessImage(two, spec, LIMITS));
    assert.ok(first_ > 0.9 && first_ > second_, `correlation with frame 1: ${first_}, frame 2: ${second_}`);
  });

  it("gives a blank image as plain background instead of failing", async () => {
    const white = await sharp({ create: { width: 50, height: 40, channels: 3, background: "#fff" } })
      .png()
      .toBuffer();
    const ours = await preprocessImage(white, spec, LIMITS);
    const background = (0 - (spec.normalize.mean[0] as number)) / (spec.normalize.std[0] as number);
    assert.ok(ours.every((v) => Math.abs(v - background) < 1e-6));
  });

  it("refuses what is not a supported image, saying why", async () => {
    await assert.rejects(
      preprocessImage(Buffer.from("not an image"), spec, LIMITS),
      (e: unknown) => e instanceof ImageDecodeError && /is not a decodable image/.test(e.message),
    );
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>');
    await assert.rejects(
      preprocessImage(svg, spec, LIMITS),
      (e: unknown) => e instanceof ImageDecodeError && /is a svg image, which is not supported/.test(e.message),
    );
  });
});
