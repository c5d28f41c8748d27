/**
 * Image preprocessing with sharp, exactly as the manifest says, against real images: the model's
 * MNIST samples, the golden fixtures' inputs (computed in Python), and renderings of the samples as
 * dark ink on paper.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import fc from "fast-check";
import sharp from "sharp";
import { digitPhoto } from "../../../tools/harness/index.ts";
import { type GoldenCase, modelDir, readModelJson, type Sample, samples } from "../../../tools/harness/testServer.ts";
import { parseConfig, type ServerConfig } from "../../src/config.ts";
import type { ImageInput } from "../../src/model/manifest.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import { BlankImageError } from "../../src/runtime/blankImage.ts";
import { readImageHeader } from "../../src/runtime/imageHeader.ts";
import { defaultImagePixels } from "../../src/runtime/imagePixelLimit.ts";
import { ImageDecodeError, type ImageLimits, preprocessImage } from "../../src/runtime/imagePreprocess.ts";
import { pngBomb, truncatedPng } from "../support/pngBomb.ts";

/** The server's default limits. */
const { limits } = parseConfig([], {}) as ServerConfig;
const LIMITS: ImageLimits = {
  // The server's default for the shipped 28 x 28 model (derived when not set).
  maxPixels: limits.maxImagePixels || defaultImagePixels([28 * 28]),
  maxSide: limits.maxImageSide,
  formats: limits.imageFormats,
};

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

  it("refuses a blank image with BlankImageError (blankImage.test.ts covers the cases over gRPC)", async () => {
    const white = await sharp({ create: { width: 50, height: 40, channels: 3, background: "#fff" } })
      .png()
      .toBuffer();
    await assert.rejects(preprocessImage(white, spec, LIMITS), BlankImageError);
  });

  it("refuses what is not a supported image, saying why", async () => {
    const refuses = (data: Uint8Array, message: string, limits = LIMITS) =>
      assert.rejects(preprocessImage(data, spec, limits), (e: unknown) => {
        assert.ok(e instanceof ImageDecodeError);
        assert.equal(e.message, message);
        return true;
      });
    await refuses(
      Buffer.from("not an image"),
      "is not an image in an accepted format; send PNG, JPEG, WebP, GIF or TIFF (--image-formats)",
    );
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>');
    await refuses(svg, "is SVG, which is not supported; send PNG, JPEG, WebP, GIF or TIFF (--image-formats)");
    const pngAndGif = { ...LIMITS, formats: ["png", "gif"] as const };
    const webp = await sharp(sampleList[0]?.png).webp().toBuffer();
    await refuses(webp, "is WebP, which is not supported; send PNG or GIF (--image-formats)", pngAndGif);
  });
});

describe("image limits, from the header", () => {
  let spec: ImageInput;
  before(() => {
    spec = loadModelFolder(modelDir()).manifest.input.image as ImageInput;
  });

  it("reads every accepted format's size from its header exactly as libvips does", async () => {
    // Random sizes, channels and encoder options; libvips's own header reading is the reference.
    const formats = ["png", "jpeg", "webp", "gif", "tiff"] as const;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...formats),
        fc.integer({ min: 1, max: 1500 }),
        fc.integer({ min: 1, max: 1500 }),
        fc.constantFrom(1, 3, 4),
        fc.boolean(),
        async (format, width, height, channels, variant) => {
          const created = channels === 4 ? 4 : 3;
          let image = sharp({ create: { width, height, channels: created, background: "#8a8a8a80" } });
          if (channels === 1) image = image.greyscale();
          const encoded = await image
            .toFormat(format, variant ? { lossless: true, progressive: true, bigtiff: true } : {})
            .toBuffer();
          const header = readImageHeader(encoded);
          const meta = await sharp(encoded).metadata();
          assert.deepEqual(header, { format: meta.format, width: meta.width, height: meta.height });
        },
      ),
      { numRuns: 60, seed: 6 },
    );
  });

  it("refuses by the header alone: libvips's metadata() reads a 100000 x 100000 PNG with no pixel data", async () => {
    const declared = truncatedPng(100_000, 100_000);
    const rssBefore = process.memoryUsage().rss;
    const meta = await sharp(declared, { limitInputPixels: false }).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ["png", 100_000, 100_000]);
    await assert.rejects(preprocessImage(declared, spec, LIMITS), (e: unknown) => {
      assert.ok(e instanceof ImageDecodeError);
      assert.equal(
        e.message,
        `is 100000 x 100000 pixels (from its PNG header), beyond the ${LIMITS.maxSide} pixels a side this server accepts (--max-image-side)`,
      );
      return true;
    });
    const grown = process.memoryUsage().rss - rssBefore;
    assert.ok(grown < 64 * 2 ** 20, `resident memory grew by ${(grown / 2 ** 20).toFixed(0)} MiB`);
  });

  it("builds bombs that are valid PNGs: a small one decodes to all black", async () => {
    const { data, info } = await sharp(await pngBomb(3000, 2000))
      .raw()
      .toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [3000, 2000]);
    assert.ok(data.every((v) => v === 0));
  });

  it("applies --max-image-side and --max-image-pixels to every format, at the bound and one past it", async () => {
    const tight = { ...LIMITS, maxSide: 40, maxPixels: 40 * 30 };
    for (const format of ["png", "jpeg", "webp", "gif", "tiff"] as const) {
      const encode = (width: number, height: number) =>
        sharp({ create: { width, height, channels: 3, background: "#fff" } })
          .toFormat(format)
          .toBuffer();
      // At the bound: admitted and decoded, and then found blank (blankImage.ts), not refused by a limit.
      await assert.rejects(preprocessImage(await encode(40, 30), spec, tight), BlankImageError);
      await assert.rejects(preprocessImage(await encode(41, 10), spec, tight), (e: unknown) => {
        assert.ok(e instanceof ImageDecodeError);
        assert.match(
          e.message,
          /^is 41 x 10 pixels \(from its \w+ header\), beyond the 40 pixels a side .*\(--max-image-side\)$/,
        );
        return true;
      });
      await assert.rejects(preprocessImage(await encode(40, 31), spec, tight), (e: unknown) => {
        assert.ok(e instanceof ImageDecodeError);
        assert.match(
          e.message,
          /^is 40 x 31 pixels \(from its \w+ header\) = 1240 pixels, beyond the 1200 .*\(--max-image-pixels\)$/,
        );
        return true;
      });
    }
  });
});
