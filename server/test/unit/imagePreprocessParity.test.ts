/**
 * The one-pass image preprocessing (a small plain PNG decoded in process, anything else decoded by one
 * libvips pipeline, the digit's fit resized on typed arrays) against what it replaced: the chain of
 * sharp pipelines kept in tools/harness/sharpChainPreprocess.ts. And the "resize" and "center-crop" modes
 * against sharp's own resize on tiny RGB images.
 */
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import fc from "fast-check";
import sharp from "sharp";
import { digitPhoto, type PhotoOptions, preprocessWithSharpChain } from "../../../tools/harness/index.ts";
import { modelDir, type Sample, samples } from "../../../tools/harness/testServer.ts";
import { parseConfig, type ServerConfig } from "../../src/config.ts";
import type { ImageInput } from "../../src/model/manifest.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import { defaultImagePixels } from "../../src/runtime/imagePixelLimit.ts";
import { greyOnWhite, type ImageLimits, preprocessImage } from "../../src/runtime/imagePreprocess.ts";
import { decodePlainPng } from "../../src/runtime/plainPng.ts";

const { limits } = parseConfig([], {}) as ServerConfig;
const LIMITS: ImageLimits = {
  // The server's default for the shipped 28 x 28 model (derived when not set).
  maxPixels: limits.maxImagePixels || defaultImagePixels([28 * 28]),
  maxSide: limits.maxImageSide,
  formats: limits.imageFormats,
};

/** Differences in grey levels (of 255): the largest, and the mean over every pixel. */
function levels(a: Float32Array, b: Float32Array, std: number) {
  let worst = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs((a[i] as number) - (b[i] as number)) * std * 255;
    worst = Math.max(worst, d);
    sum += d;
  }
  return { worst, mean: sum / a.length };
}

/** Pseudo-random bytes, the same every run. */
function noise(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let s = seed;
  for (let i = 0; i < length; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out[i] = s >> 23;
  }
  return out;
}

describe("plain PNGs decoded in process", () => {
  it("give exactly libvips's pixels, for every channel count, size and filter choice", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 70 }),
        fc.integer({ min: 1, max: 70 }),
        fc.constantFrom(1, 2, 3, 4),
        fc.integer({ min: 0, max: 9 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 1_000_000 }),
        async (width, height, channels, level, adaptive, seed) => {
          // Smooth gradients with noise on top, so that every PNG filter type gets chosen somewhere.
          const data = noise(width * height * channels, seed);
          for (let i = 0; i < data.length; i++) if (seed % 2) data[i] = ((data[i] as number) >> 3) + (i % 200);
          const png = await sharp(data, { raw: { width, height, channels } })
            .png({ compressionLevel: level, adaptiveFiltering: adaptive })
            .toBuffer();
          const ours = decodePlainPng(png);
          const theirs = await sharp(png).raw().toBuffer({ resolveWithObject: true });
          assert.ok(ours, "a plain 8-bit PNG is decoded in process");
          assert.deepEqual([ours.width, ours.height, ours.channels], [width, height, theirs.info.channels]);
          assert.ok(Buffer.from(ours.data).equals(theirs.data), "the same pixels as libvips");
        },
      ),
      { numRuns: 80, seed: 13 },
    );
  });

  it("leave to libvips what they cannot decode exactly, and the server still reads it", async () => {
    const sample = (samples()[0] as Sample).png;
    const spec = loadModelFolder(modelDir()).manifest.input.image as ImageInput;
    const palette = await sharp(sample).png({ palette: true, colours: 16 }).toBuffer();
    const interlaced = await sharp(sample).png({ progressive: true }).toBuffer();
    const sixteenBit = await sharp(sample).toColourspace("grey16").png().toBuffer();
    const withProfile = await sharp(sample).withIccProfile("p3").png().toBuffer();
    for (const [name, png] of Object.entries({ palette, interlaced, sixteenBit, withProfile })) {
      assert.equal(decodePlainPng(png), undefined, `${name} goes to libvips`);
      const ours = await preprocessImage(png, spec, LIMITS);
      const before = await preprocessWithSharpChain(png, spec, LIMITS);
      assert.ok(levels(ours, before, spec.normalize.std[0] as number).worst <= 3, name);
    }
    // A damaged chunk is not ours to forgive: libvips decides, as it did before.
    const damaged = Buffer.from(sample);
    const at = damaged.length - 20; // inside the IDAT, so its CRC fails
    damaged[at] = (damaged[at] as number) ^ 0xff;
    assert.equal(decodePlainPng(damaged), undefined);
    const before = await preprocessWithSharpChain(damaged, spec, LIMITS).then(
      () => "decoded",
      (e: Error) => e.message,
    );
    const after = await preprocessImage(damaged, spec, LIMITS).then(
      () => "decoded",
      (e: Error) => e.message,
    );
    assert.equal(after, before);
  });

  // RGBA, which libvips flattens 2 levels away from this, is left to libvips (imagePreprocess.ts).
  it("flatten grey + alpha onto white and turn RGB into grey within a grey level of libvips", async () => {
    for (const channels of [2, 3] as const) {
      const [width, height] = [37, 23];
      const png = await sharp(noise(width * height * channels, channels), { raw: { width, height, channels } })
        .png()
        .toBuffer();
      const ours = greyOnWhite(decodePlainPng(png) as NonNullable<ReturnType<typeof decodePlainPng>>);
      const theirs = await sharp(png).flatten({ background: "#ffffff" }).greyscale().raw().toBuffer();
      let worst = 0;
      for (let i = 0; i < width * height; i++)
        worst = Math.max(
          worst,
          Math.abs((ours.pixels[i] as number) - (theirs[i * (theirs.length / (width * height))] as number)),
        );
      assert.ok(worst <= 1, `${channels} channels: ${worst} grey levels off`);
    }
  });
});

describe("mnist-digit in one pass, against the chain of sharp pipelines it replaced", () => {
  let spec: ImageInput;
  let std: number;
  before(() => {
    spec = loadModelFolder(modelDir()).manifest.input.image as ImageInput;
    std = spec.normalize.std[0] as number;
  });

  it("gives the same rows for the model's sample PNGs", async () => {
    // Samples whose ink is already 20 pixels tall are copied as they are by both; the few whose fit
    // resizes go through our kernel instead of libvips's and may differ by rounding.
    const list = samples();
    let same = 0;
    for (const sample of list) {
      const d = levels(
        await preprocessImage(sample.png, spec, LIMITS),
        await preprocessWithSharpChain(sample.png, spec, LIMITS),
        std,
      );
      assert.ok(d.worst <= 3, `${sample.file}: ${d.worst.toFixed(1)} grey levels off`);
      if (d.worst < 0.01) same++;
    }
    assert.ok(same >= 0.95 * list.length, `${same} of ${list.length} identical`);
  });

  it("gives the same rows, up to resampling, for photos of the samples and for digits smaller than the box", async () => {
    // Photos shrink the ink 3-15x. libvips shrinks in 12-bit fixed point, by whole factors first;
    // ours is one floating-point Lanczos pass: the two differ at stroke edges by a few grey levels
    // (worst 9, mean 0.3 when measured), which is less than the JPEG's own noise. Small digits are
    // enlarged, bicubic in both.
    const renderings: PhotoOptions[] = [
      { size: 150, canvas: { width: 400, height: 300 }, offset: { x: 220, y: 30 }, format: "jpeg" },
      { size: 56, canvas: { width: 120, height: 90 }, offset: { x: 4, y: 30 }, format: "png" },
      { size: 20, canvas: { width: 40, height: 40 }, offset: { x: 4, y: 10 }, format: "png" },
      { size: 300, canvas: { width: 320, height: 480 }, offset: { x: 10, y: 160 }, format: "webp" },
    ];
    for (const rendering of renderings) {
      let worst = 0;
      let mean = 0;
      const chosen = samples().slice(0, 15);
      for (const sample of chosen) {
        const photo = await digitPhoto(sample.png, rendering);
        const d = levels(
          await preprocessImage(photo, spec, LIMITS),
          await preprocessWithSharpChain(photo, spec, LIMITS),
          std,
        );
        worst = Math.max(worst, d.worst);
        mean += d.mean / chosen.length;
      }
      const name = `${rendering.format} ${rendering.size}px`;
      assert.ok(worst <= 16, `${name}: worst ${worst.toFixed(1)} grey levels`);
      assert.ok(mean <= 0.5, `${name}: ${mean.toFixed(2)} grey levels off on average`);
    }
  });
});

describe("RGB modes", () => {
  const normalize = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
  const rgb = (width: number, height: number) =>
    sharp(noise(width * height * 3, width * 31 + height), { raw: { width, height, channels: 3 } });

  /** HWC bytes -> CHW normalised floats, written out independently of the server's code. */
  function expected(pixels: Buffer, width: number, height: number): Float32Array {
    const out = new Float32Array(3 * width * height);
    for (let c = 0; c < 3; c++)
      for (let i = 0; i < width * height; i++)
        out[c * width * height + i] =
          ((pixels[i * 3 + c] as number) / 255 - (normalize.mean[c] as number)) / (normalize.std[c] as number);
    return out;
  }

  it('"resize" stretches to height x width, then normalises each channel', async () => {
    const spec: ImageInput = { layout: "NCHW", channels: 3, height: 4, width: 5, preprocess: "resize", normalize };
    const png = await rgb(11, 7).png().toBuffer();
    const pixels = await sharp(png).resize(5, 4, { fit: "fill" }).raw().toBuffer();
    assert.deepEqual(await preprocessImage(png, spec, LIMITS), expected(pixels, 5, 4));
  });

  it('"center-crop" resizes the shorter side, then takes the centre, as torchvision does', async () => {
    const spec: ImageInput = {
      layout: "NCHW",
      channels: 3,
      height: 4,
      width: 4,
      preprocess: "center-crop",
      resizeShorter: 5,
      normalize,
    };
    // 9 x 6: the shorter side 6 -> 5, the longer int(5 * 9 / 6) = 7; crop offsets round(1.5) = 2 and
    // round(0.5) = 0 (half to even).
    const png = await rgb(9, 6).png().toBuffer();
    const pixels = await sharp(png)
      .resize(7, 5, { fit: "fill" })
      .extract({ left: 2, top: 0, width: 4, height: 4 })
      .raw()
      .toBuffer();
    assert.deepEqual(await preprocessImage(png, spec, LIMITS), expected(pixels, 4, 4));

    // EXIF orientation 6 (rotate 90): the 9 x 6 image is 6 x 9 upright, so the width is the shorter.
    const rotated = await rgb(9, 6).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    const upright = await sharp(rotated)
      .rotate()
      .resize(5, 7, { fit: "fill" })
      .extract({ left: 0, top: 2, width: 4, height: 4 })
      .raw()
      .toBuffer();
    assert.deepEqual(await preprocessImage(rotated, spec, LIMITS), expected(upright, 4, 4));
  });
});
