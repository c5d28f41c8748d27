/**
 * The image preprocessing as it was before decoding went to one pass (commit 21f7192, then
 * server/src/runtime/imagePreprocess.ts): a chain of sharp pipelines - metadata(), decode and reduce,
 * then a second pipeline for the digit's fit. Kept only as the reference that the one-pass path is
 * held against (imagePreprocessParity.test.ts); the server does not use it.
 */
import sharp, { type Sharp } from "sharp";
import type { ImageInput } from "../../server/src/model/manifest.ts";
import { FORMAT_NAMES, readImageHeader } from "../../server/src/runtime/imageHeader.ts";
import { ImageDecodeError, type ImageLimits } from "../../server/src/runtime/imagePreprocess.ts";

/** Large photos are reduced to this before the per-pixel work; a digit survives it easily. */
const WORKING_SIZE = 256;
/** The noise floor never takes more than this fraction of the contrast between paper and ink. */
const MAX_FLOOR = 0.5;
/** Below this contrast (0-255) there is no ink at all: the image is blank. */
const MIN_CONTRAST = 16;

export async function preprocessWithSharpChain(
  data: Uint8Array,
  spec: ImageInput,
  limits: ImageLimits,
): Promise<Float32Array> {
  await admitImage(data, limits);
  return spec.preprocess === "mnist-digit" ? mnistDigit(data, spec, limits) : stretch(data, spec, limits);
}

/**
 * Refuses, before any pixel is decoded, what the server does not accept: a format that is not on the
 * list (identified from the magic bytes by our own code, so that no other format reaches libvips and
 * the interpreters behind some of its loaders), and a declared size beyond the limits (read from the
 * header, so that a decompression bomb is refused without allocating its bitmap). libvips then reads
 * the header itself (sharp's metadata() decodes no pixels) and must agree on the format and the limits;
 * limitInputPixels stays on every decode as a last line of defence.
 */
async function admitImage(data: Uint8Array, limits: ImageLimits): Promise<void> {
  const accepted = acceptedNames(limits);
  const header = readImageHeader(data);
  if (header.format === "unknown") {
    throw new ImageDecodeError(`is not an image in an accepted format; send ${accepted}`);
  }
  if (header.format === "other")
    throw new ImageDecodeError(`is ${header.name}, which is not supported; send ${accepted}`);
  const name = FORMAT_NAMES[header.format];
  if (!limits.formats.includes(header.format)) {
    throw new ImageDecodeError(`is ${name}, which is not supported; send ${accepted}`);
  }
  if ("problem" in header) throw new ImageDecodeError(`is not a readable ${name} image: ${header.problem}`);
  checkSize(header.width, header.height, `its ${name} header`, limits);

  let meta: { format?: string; width?: number; height?: number };
  try {
    meta = await sharp(data, { limitInputPixels: limits.maxPixels }).metadata();
  } catch (error) {
    throw new ImageDecodeError(`could not be decoded as ${name}: ${messageOf(error)}`);
  }
  if (meta.format !== header.format) {
    throw new ImageDecodeError(`could not be decoded: it starts like ${name}, but libvips reads it as ${meta.format}`);
  }
  checkSize(meta.width ?? 0, meta.height ?? 0, `libvips's reading of its ${name} header`, limits);
}

function checkSize(width: number, height: number, source: string, limits: ImageLimits): void {
  const size = `${width} x ${height} pixels (from ${source})`;
  if (width === 0 || height === 0) throw new ImageDecodeError(`is ${size}: an empty image`);
  if (width > limits.maxSide || height > limits.maxSide) {
    throw new ImageDecodeError(
      `is ${size}, beyond the ${limits.maxSide} pixels a side this server accepts (--max-image-side)`,
    );
  }
  if (width * height > limits.maxPixels) {
    throw new ImageDecodeError(
      `is ${size} = ${width * height} pixels, beyond the ${limits.maxPixels} this server accepts (--max-image-pixels)`,
    );
  }
}

/** "PNG, JPEG, WebP, GIF or TIFF (--image-formats)", from the server's list. */
function acceptedNames(limits: ImageLimits): string {
  const names = limits.formats.map((f) => FORMAT_NAMES[f]);
  const list = names.length > 1 ? `${names.slice(0, -1).join(", ")} or ${names.at(-1)}` : (names[0] ?? "nothing");
  return `${list} (--image-formats)`;
}

/** First frame/page, EXIF orientation applied, transparency flattened onto white paper. */
function decode(data: Uint8Array, limits: ImageLimits) {
  return sharp(data, { pages: 1, limitInputPixels: limits.maxPixels })
    .rotate()
    .flatten({ background: { r: 255, g: 255, b: 255 } });
}

async function raw(image: Sharp, channels: 1 | 3) {
  try {
    const pipeline = channels === 1 ? image.greyscale() : image.toColourspace("srgb");
    const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
    return { pixels: firstChannels(data, info.channels, channels), width: info.width, height: info.height };
  } catch (error) {
    throw new ImageDecodeError(`could not be decoded: ${messageOf(error)}`);
  }
}

/** sharp may hand back more channels than asked for (e.g. a greyscale image as RGB); keep the first. */
function firstChannels(data: Buffer, have: number, want: number): Uint8Array {
  if (have === want) return data;
  const out = new Uint8Array((data.length / have) * want);
  for (let i = 0, o = 0; i < data.length; i += have) for (let c = 0; c < want; c++) out[o++] = data[i + c] as number;
  return out;
}

async function stretch(data: Uint8Array, spec: ImageInput, limits: ImageLimits): Promise<Float32Array> {
  const { pixels } = await raw(
    decode(data, limits).resize(spec.width, spec.height, { fit: "fill" }),
    spec.channels === 1 ? 1 : 3,
  );
  return normalise(pixels, spec, spec.channels);
}

async function mnistDigit(data: Uint8Array, spec: ImageInput, limits: ImageLimits): Promise<Float32Array> {
  const reduced = decode(data, limits).resize(WORKING_SIZE, WORKING_SIZE, { fit: "inside", withoutEnlargement: true });
  const { pixels, width, height } = await raw(reduced, 1);
  const ink = inkOnBlack(pixels, width, height);
  const canvas = new Uint8Array(spec.width * spec.height);
  const box = bounds(ink, width, height);
  if (box) {
    const side = Math.max(1, Math.round((Math.min(spec.width, spec.height) * 20) / 28));
    const scale = side / Math.max(box.width, box.height);
    const fitWidth = Math.max(1, Math.round(box.width * scale));
    const fitHeight = Math.max(1, Math.round(box.height * scale));
    const cropped = new Uint8Array(box.width * box.height);
    for (let y = 0; y < box.height; y++) {
      cropped.set(
        ink.subarray((box.top + y) * width + box.left, (box.top + y) * width + box.left + box.width),
        y * box.width,
      );
    }
    const fitted = await sharp(cropped, { raw: { width: box.width, height: box.height, channels: 1 } })
      .resize(fitWidth, fitHeight, { fit: "fill" })
      .raw()
      .toBuffer({ resolveWithObject: true });
    // One channel in does not mean one channel out: sharp may hand back sRGB.
    const ink1 = firstChannels(fitted.data, fitted.info.channels, 1);
    placeByMass(ink1, fitWidth, fitHeight, canvas, spec.width, spec.height);
  }
  return normalise(canvas, spec, 1);
}

/**
 * Grey pixels -> ink as bright on black: background at 0, the strongest ink at 255. The border, which a
 * digit rarely touches, tells the background: a light median means dark ink on paper (inverted here),
 * and its 99th percentile is where paper texture and noise end and ink begins.
 */
function inkOnBlack(grey: Uint8Array, width: number, height: number): Uint8Array {
  const border: number[] = [];
  for (let x = 0; x < width; x++) border.push(grey[x] as number, grey[(height - 1) * width + x] as number);
  for (let y = 0; y < height; y++) border.push(grey[y * width] as number, grey[y * width + width - 1] as number);
  border.sort((a, b) => a - b);
  const median = border[border.length >> 1] as number;
  const invert = median > 127;
  const at = (i: number) => (invert ? 255 - (grey[i] as number) : (grey[i] as number));
  const background = invert ? 255 - median : median;
  const noisy = invert
    ? 255 - (border[Math.floor(border.length * 0.01)] as number)
    : (border[Math.floor(border.length * 0.99)] as number);
  let peak = 0;
  for (let i = 0; i < grey.length; i++) peak = Math.max(peak, at(i));
  const out = new Uint8Array(grey.length);
  if (peak - background < MIN_CONTRAST) return out;
  const floor = Math.min(Math.max(noisy, background), background + MAX_FLOOR * (peak - background));
  const gain = 255 / (peak - floor);
  for (let i = 0; i < grey.length; i++) {
    const v = at(i);
    out[i] = v <= floor ? 0 : Math.min(255, Math.round((v - floor) * gain));
  }
  return out;
}

/** Bounding box of the ink, ignoring specks: a pixel counts only with at least two inked neighbours. */
function bounds(ink: Uint8Array, width: number, height: number) {
  let left = width;
  let right = -1;
  let top = height;
  let bottom = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if ((ink[y * width + x] as number) === 0 || inkedNeighbours(ink, width, height, x, y) < 2) continue;
      if (x < left) left = x;
      if (x > right) right = x;
      if (y < top) top = y;
      if (y > bottom) bottom = y;
    }
  }
  return right < 0 ? undefined : { left, top, width: right - left + 1, height: bottom - top + 1 };
}

function inkedNeighbours(ink: Uint8Array, width: number, height: number, x: number, y: number): number {
  let n = 0;
  for (let dy = -1; dy <= 1; dy++) {
    for (let dx = -1; dx <= 1; dx++) {
      const nx = x + dx;
      const ny = y + dy;
      if ((dx || dy) && nx >= 0 && ny >= 0 && nx < width && ny < height && (ink[ny * width + nx] as number) > 0) n++;
    }
  }
  return n;
}

/** Pastes `src` into `dst` so that its centre of mass lands on the centre of `dst` (as MNIST did). */
function placeByMass(src: Uint8Array, sw: number, sh: number, dst: Uint8Array, dw: number, dh: number): void {
  let mass = 0;
  let mx = 0;
  let my = 0;
  for (let y = 0; y < sh; y++) {
    for (let x = 0; x < sw; x++) {
      const v = src[y * sw + x] as number;
      mass += v;
      mx += v * x;
      my += v * y;
    }
  }
  // Pixel centres sit at index + 0.5, so the canvas centre is dw / 2 in those units.
  const left = mass > 0 ? Math.round(dw / 2 - mx / mass) : Math.floor((dw - sw) / 2);
  const top = mass > 0 ? Math.round(dh / 2 - my / mass) : Math.floor((dh - sh) / 2);
  for (let y = 0; y < sh; y++) {
    const ty = top + y;
    if (ty < 0 || ty >= dh) continue;
    for (let x = 0; x < sw; x++) {
      const tx = left + x;
      if (tx >= 0 && tx < dw) dst[ty * dw + tx] = src[y * sw + x] as number;
    }
  }
}

/** Interleaved HWC bytes -> planar CHW floats, normalised per channel. */
function normalise(pixels: Uint8Array, spec: ImageInput, have: number): Float32Array {
  const plane = spec.width * spec.height;
  const out = new Float32Array(spec.channels * plane);
  for (let c = 0; c < spec.channels; c++) {
    const mean = spec.normalize.mean[c] as number;
    const std = spec.normalize.std[c] as number;
    const from = have === 1 ? 0 : c;
    for (let i = 0; i < plane; i++) out[c * plane + i] = ((pixels[i * have + from] as number) / 255 - mean) / std;
  }
  return out;
}

function messageOf(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0] ?? "";
}
