/**
 * What preprocessing one image costs, one-pass (imagePreprocess.ts) against the chain of sharp
 * pipelines it replaced (tools/harness/sharpChainPreprocess.ts), alternating in rounds: for the
 * model's sample PNGs (28x28, decoded in process) and for photos of them (JPEG and PNG, decoded by
 * libvips). Wall time per image one at a time, and CPU time per image of this process (libvips's
 * threads included) with 16 in flight (docs/benchmarks.md, "Images").
 *
 *   node --import tsx server/bench/probes/imageCost.ts [--images 300] [--rounds 3]
 */
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { digitPhoto, preprocessWithSharpChain } from "../../../tools/harness/index.ts";
import { median } from "../../../tools/harness/statistics.ts";
import { parseConfig, type ServerConfig } from "../../src/config.ts";
import type { ImageInput } from "../../src/model/manifest.ts";
import { discoverModelFolders, loadModelFolder } from "../../src/model/modelFolder.ts";
import { defaultImagePixels } from "../../src/runtime/imagePixelLimit.ts";
import { type ImageLimits, preprocessImage } from "../../src/runtime/imagePreprocess.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const flag = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
};
const IMAGES = flag("images", 300);
const ROUNDS = flag("rounds", 3);

const model = loadModelFolder(discoverModelFolders(join(REPO, "models"))[0] as string);
const spec = model.manifest.input.image as ImageInput;
if (!model.manifest.samples) throw new Error("the model ships no samples");
const labels = join(model.dir, model.manifest.samples);
const pngs = (JSON.parse(readFileSync(labels, "utf8")) as { file: string }[])
  .slice(0, 30)
  .map((s) => readFileSync(join(dirname(labels), s.file)));
const { limits } = parseConfig([], {}) as ServerConfig;
const LIMITS: ImageLimits = {
  // The server's default for the shipped 28 x 28 model (derived when not set).
  maxPixels: limits.maxImagePixels || defaultImagePixels([28 * 28]),
  maxSide: limits.maxImageSide,
  formats: limits.imageFormats,
};
const photos = await Promise.all(
  pngs
    .slice(0, 10)
    .flatMap((png) => [
      digitPhoto(png, { size: 150, canvas: { width: 400, height: 300 }, offset: { x: 220, y: 30 }, format: "jpeg" }),
      digitPhoto(png, { size: 56, canvas: { width: 120, height: 90 }, offset: { x: 4, y: 30 }, format: "png" }),
    ]),
);

type Preprocess = (data: Uint8Array, spec: ImageInput, limits: ImageLimits) => Promise<Float32Array>;
async function measure(preprocess: Preprocess, images: Uint8Array[], count: number) {
  const at = (i: number) => images[i % images.length] as Uint8Array;
  let t0 = performance.now();
  for (let i = 0; i < count; i++) await preprocess(at(i), spec, LIMITS);
  const serialUs = ((performance.now() - t0) * 1000) / count;
  t0 = performance.now();
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: 16 }, async (_, k) => {
      for (let i = k; i < count; i += 16) await preprocess(at(i), spec, LIMITS);
    }),
  );
  const used = process.cpuUsage(cpu);
  return { serialUs, cpuUs: (used.user + used.system) / count };
}

const results = new Map<string, { serial: number[]; cpu: number[] }>();
for (let round = 0; round < ROUNDS; round++) {
  for (const [set, images, count] of [
    ["sample PNGs (28x28)", pngs, IMAGES],
    ["photos (JPEG 400x300, PNG 120x90)", photos, Math.max(20, IMAGES / 5)],
  ] as const) {
    for (const [name, preprocess] of [
      ["one pass", preprocessImage],
      ["sharp chain (before)", preprocessWithSharpChain],
    ] as const) {
      if (round === 0) await measure(preprocess, images, 20); // warm-up
      const r = await measure(preprocess, images, count);
      const key = `| ${set} | ${name} |`;
      const entry = results.get(key) ?? { serial: [], cpu: [] };
      entry.serial.push(r.serialUs);
      entry.cpu.push(r.cpuUs);
      results.set(key, entry);
    }
  }
}
console.log(
  "| images | preprocessing | wall per image, one at a time (median of rounds) | CPU per image, 16 in flight |",
);
console.log("|---|---|---|---|");
for (const [key, { serial, cpu }] of results)
  console.log(`${key} ${median(serial).toFixed(0)} us | ${median(cpu).toFixed(0)} us |`);
