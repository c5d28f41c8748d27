/**
 * Encoded image -> the model's float32 input row, exactly as the manifest's `input.image` says.
 *
 * "mnist-digit" repeats how MNIST itself was made, so that a dark digit photographed on white paper
 * looks like the training data: invert a light background, crop to the ink, fit the ink into a 20x20
 * box (for a 28x28 input; the same proportion otherwise), then centre it by mass. "resize" stretches
 * the image to the input size; "center-crop" resizes its shorter side to `resize_shorter` and takes
 * the centre (torchvision's Resize + CenterCrop). All normalise per channel: (pixel / 255 - mean) / std.
 *
 * Every image is decoded once. A small plain PNG (plainPng.ts) is decoded here, on the event loop, in
 * tens of microseconds; anything else goes through one libvips pipeline on libuv's thread pool, which
 * also does the geometry that does not depend on the pixels (the reduction to WORKING_SIZE, or the
 * resize and crop). What depends on the pixels - where the ink is - runs on the decoded bytes here,
 * on at most WORKING_SIZE pixels a side: a second libvips pipeline for the fit would cost more than
 * the whole CTM costs a request (docs/benchmarks.md, "Images").
 */
import sharp, { type Sharp } from "sharp";
import type { ImageInput } from "../model/manifest.ts";
import { BlankImageError, noInkReason } from "./blankImage.ts";
import { inDecodeSlot } from "./decodeSlots.ts";
import { FORMAT_NAMES, type ImageHeader, type RasterFormat, readImageHeader } from "./imageHeader.ts";
import { lanczosResize } from "./lanczosResize.ts";
import { decodePlainPng, MAX_PIXELS as PLAIN_PNG_PIXELS, type RawPixels } from "./plainPng.ts";

/** The input bytes are not an image this server accepts; the message says why. */
export class ImageDecodeError extends Error {
  override name = "ImageDecodeError";
}

/** What the server accepts (see config.ts for the defaults). */
export interface ImageLimits {
  /** Largest width x height, from the header. */
  maxPixels: number;
  /** Largest width or height, from the header. */
  maxSide: number;
  /** Accepted formats, among the raster formats readImageHeader sizes. */
  formats: readonly RasterFormat[];
}
/** Large photos are reduced to this before the per-pixel work; a digit survives it easily. */
const WORKING_SIZE = 256;
/** The noise floor never takes more than this fraction of the contrast between paper and ink. */
const MAX_FLOOR = 0.5;
/** Below this contrast (0-255) there is no ink at all: the image is blank. */
const MIN_CONTRAST = 16;

// Requests are one-off images: libvips' operation cache would only hold on to their memory.
sharp.cache(false);

/**
 * `signal`: the request's; while the image waits for a decode slot (decodeSlots.ts), aborting it takes
 * the image out of the line undecoded.
 */
export async function preprocessImage(
  data: Uint8Array,
  spec: ImageInput,
  limits: ImageLimits,
  signal?: AbortSignal,
): Promise<Float32Array> {
  const header = admitHeader(data, limits);
  if (spec.preprocess === "mnist-digit") {
    const grey = await workingGrey(data, header, limits, signal);
    return normalise(digitCanvas(grey, spec), spec, 1);
  }
  const channels = spec.channels === 1 ? 1 : 3;
  const pixels = await inDecodeSlot(async () => {
    const meta = await admitToLibvips(data, header, limits);
    return resized(data, spec, meta, limits);
  }, signal);
  return normalise(pixels, spec, channels);
}

/** One-channel pixels, row by row. */
export interface Grey {
  pixels: Uint8Array;
  width: number;
  height: number;
}

/**
 * Refuses, before any pixel is decoded, what the server does not accept: a format that is not on the
 * list (identified from the magic bytes by our own code, so that no other format reaches libvips and
 * the interpreters behind some of its loaders), and a declared size beyond the limits (read from the
 * header, so that a decompression bomb is refused without allocating its bitmap).
 */
function admitHeader(data: Uint8Array, limits: ImageLimits): AdmittedHeader {
  const header = readImageHeader(data);
  if (header.format === "unknown") {
    throw new ImageDecodeError(`is not an image in an accepted format; send ${acceptedNames(limits)}`);
  }
  if (header.format === "other")
    throw new ImageDecodeError(`is ${header.name}, which is not supported; send ${acceptedNames(limits)}`);
  const name = FORMAT_NAMES[header.format];
  if (!limits.formats.includes(header.format)) {
    throw new ImageDecodeError(`is ${name}, which is not supported; send ${acceptedNames(limits)}`);
  }
  if ("problem" in header) throw new ImageDecodeError(`is not a readable ${name} image: ${header.problem}`);
  checkSize(header.width, header.height, `its ${name} header`, limits);
  return header;
}

type AdmittedHeader = Extract<ImageHeader, { width: number }>;

/** What libvips's reading of the header says, once it agrees with ours. */
interface LibvipsHeader {
  width: number;
  height: number;
  /** EXIF orientation, 1-8; 5-8 swap width and height once applied. */
  orientation: number;
}

/**
 * Before libvips decodes an image, it reads the header itself (sharp's metadata() decodes no pixels)
 * and must agree on the format and the limits; limitInputPixels stays on every decode as a last line
 * of defence.
 */
async function admitToLibvips(data: Uint8Array, header: AdmittedHeader, limits: ImageLimits): Promise<LibvipsHeader> {
  const name = FORMAT_NAMES[header.format];
  let meta: { format?: string; width?: number; height?: number; orientation?: number };
  try {
    meta = await sharp(data, { limitInputPixels: limits.maxPixels }).metadata();
  } catch (error) {
    throw new ImageDecodeError(`could not be decoded as ${name}: ${messageOf(error)}`);
  }
  if (meta.format !== header.format) {
    throw new ImageDecodeError(`could not be decoded: it starts like ${name}, but libvips reads it as ${meta.format}`);
  }
  checkSize(meta.width ?? 0, meta.height ?? 0, `libvips's reading of its ${name} header`, limits);
  return { width: meta.width ?? 0, height: meta.height ?? 0, orientation: meta.orientation ?? 1 };
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
function firstChannels(data: Uint8Array, have: number, want: number): Uint8Array {
  if (have === want) return data;
  const out = new Uint8Array((data.length / have) * want);
  for (let i = 0, o = 0; i < data.length; i += have) for (let c = 0; c < want; c++) out[o++] = data[i + c] as number;
  return out;
}

/**
 * The image as grey pixels on white paper, at most WORKING_SIZE a side: decoded here when it is a
 * plain PNG that small, by one libvips pipeline otherwise.
 */
async function workingGrey(
  data: Uint8Array,
  header: AdmittedHeader,
  limits: ImageLimits,
  signal: AbortSignal | undefined,
): Promise<Grey> {
  const { width, height } = header;
  if (
    header.format === "png" &&
    width <= WORKING_SIZE &&
    height <= WORKING_SIZE &&
    width * height <= PLAIN_PNG_PIXELS
  ) {
    const decoded = decodePlainPng(data);
    // Colour with transparency stays with libvips: its flatten and greyscale of RGBA round differently
    // from ours by up to 2 grey levels, where grey + alpha and RGB agree within one.
    if (decoded && decoded.channels !== 4) return greyOnWhite(decoded);
  }
  return inDecodeSlot(async () => {
    await admitToLibvips(data, header, limits);
    const reduced = decode(data, limits).resize(WORKING_SIZE, WORKING_SIZE, {
      fit: "inside",
      withoutEnlargement: true,
    });
    return raw(reduced, 1);
  }, signal);
}

/** sRGB-encoded 0-255 -> linear light, as libvips converts to greyscale. */
const LINEAR = Float64Array.from({ length: 256 }, (_, v) => {
  const c = v / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
});

/**
 * What libvips's flatten onto white and greyscale do: alpha blends each channel with 255, and colour
 * becomes the Rec. 709 luminance of its linear light, encoded back to sRGB. Within a grey level of
 * libvips for grey, grey + alpha and RGB (imagePreprocessParity.test.ts); 2 for RGBA.
 */
export function greyOnWhite(image: RawPixels): Grey {
  const { data, width, height, channels } = image;
  const n = width * height;
  if (channels === 1) return { pixels: data, width, height };
  const out = new Uint8Array(n);
  const alpha = channels === 2 || channels === 4;
  // No closures in the per-pixel loop: tsx names every closure it creates, a call per pixel.
  const flat = new Float64Array(3);
  for (let i = 0; i < n; i++) {
    const at = i * channels;
    const a = alpha ? (data[at + channels - 1] as number) / 255 : 1;
    const colours = channels >= 3 ? 3 : 1;
    for (let c = 0; c < colours; c++) {
      const v = data[at + c] as number;
      flat[c] = alpha ? Math.round(v * a + 255 * (1 - a)) : v;
    }
    if (colours === 1) {
      out[i] = flat[0] as number;
      continue;
    }
    const y =
      0.2126 * (LINEAR[flat[0] as number] as number) +
      0.7152 * (LINEAR[flat[1] as number] as number) +
      0.0722 * (LINEAR[flat[2] as number] as number);
    const encoded = y <= 0.0031308 ? 12.92 * y : 1.055 * y ** (1 / 2.4) - 0.055;
    out[i] = Math.round(255 * encoded);
  }
  return { pixels: out, width, height };
}

/** "resize" and "center-crop": one libvips pipeline does the decode and the geometry. */
async function resized(data: Uint8Array, spec: ImageInput, meta: LibvipsHeader, limits: ImageLimits) {
  let image = decode(data, limits);
  if (spec.preprocess === "center-crop") {
    const crop = centreCrop(meta, spec);
    image = image.resize(crop.resizeWidth, crop.resizeHeight, { fit: "fill" }).extract(crop.region);
  } else {
    image = image.resize(spec.width, spec.height, { fit: "fill" });
  }
  return (await raw(image, spec.channels === 1 ? 1 : 3)).pixels;
}

/**
 * torchvision's Resize(resize_shorter) then CenterCrop(height, width), which is how the checkpoints
 * these manifests come from were evaluated: the longer side is scaled by the same factor and rounded
 * down, and the crop's offset is rounded half to even, as Python's round() does.
 */
export function centreCrop(image: { width: number; height: number; orientation: number }, spec: ImageInput) {
  const shorter = spec.resizeShorter ?? Math.max(spec.width, spec.height);
  const [w, h] = image.orientation >= 5 ? [image.height, image.width] : [image.width, image.height];
  const [resizeWidth, resizeHeight] =
    w <= h ? [shorter, Math.floor((shorter * h) / w)] : [Math.floor((shorter * w) / h), shorter];
  return {
    resizeWidth,
    resizeHeight,
    region: {
      left: roundHalfEven((resizeWidth - spec.width) / 2),
      top: roundHalfEven((resizeHeight - spec.height) / 2),
      width: spec.width,
      height: spec.height,
    },
  };
}

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The digit found in `grey`, fitted and centred on a height x width canvas, as bright ink on black. */
function digitCanvas(grey: Grey, spec: ImageInput): Uint8Array {
  const { pixels, width, height } = grey;
  const ink = inkOnBlack(pixels, width, height);
  const canvas = new Uint8Array(spec.width * spec.height);
  const box = bounds(ink, width, height);
  // No stroke at all: refused (blankImage.ts), since the model would answer a blank canvas confidently.
  if (!box) throw new BlankImageError(noInkReason(pixels));
  const side = Math.max(1, Math.round((Math.min(spec.width, spec.height) * 20) / 28));
  const scale = side / Math.max(box.width, box.height);
  const fitWidth = Math.max(1, Math.round(box.width * scale));
  const fitHeight = Math.max(1, Math.round(box.height * scale));
  const cropped = new Uint8Array(box.width * box.height);
  for (let y = 0; y < box.height; y++) {
    const from = (box.top + y) * width + box.left;
    cropped.set(ink.subarray(from, from + box.width), y * box.width);
  }
  const fitted = lanczosResize(cropped, box.width, box.height, fitWidth, fitHeight);
  placeByMass(fitted, fitWidth, fitHeight, canvas, spec.width, spec.height);
  return canvas;
}

/** Where the paper ends and the ink begins in a grey image (inkStatistics). */
export interface InkStatistics {
  /** A light background: dark ink on paper, inverted before anything else. */
  inverted: boolean;
  /** The background's level, 0-255, after inversion. */
  background: number;
  /** The strongest ink's level, after inversion. */
  peak: number;
  /** Levels at or below this are paper texture and noise, not ink. */
  floor: number;
  /** Less contrast than MIN_CONTRAST between paper and ink: there is no ink at all. */
  blank: boolean;
}

/**
 * The border, which a digit rarely touches, tells the background: a light median means dark ink on
 * paper, and the border's 99th percentile is where paper texture and noise end and ink begins. This
 * is also the place to ask whether an image has any ink at all.
 */
export function inkStatistics(grey: Uint8Array, width: number, height: number): InkStatistics {
  const border: number[] = [];
  for (let x = 0; x < width; x++) border.push(grey[x] as number, grey[(height - 1) * width + x] as number);
  for (let y = 0; y < height; y++) border.push(grey[y * width] as number, grey[y * width + width - 1] as number);
  border.sort((a, b) => a - b);
  const median = border[border.length >> 1] as number;
  const inverted = median > 127;
  const background = inverted ? 255 - median : median;
  const noisy = inverted
    ? 255 - (border[Math.floor(border.length * 0.01)] as number)
    : (border[Math.floor(border.length * 0.99)] as number);
  let peak = 0;
  if (inverted) for (let i = 0; i < grey.length; i++) peak = Math.max(peak, 255 - (grey[i] as number));
  else for (let i = 0; i < grey.length; i++) peak = Math.max(peak, grey[i] as number);
  const floor = Math.min(Math.max(noisy, background), background + MAX_FLOOR * (peak - background));
  return { inverted, background, peak, floor, blank: peak - background < MIN_CONTRAST };
}

/** Grey pixels -> ink as bright on black: background at 0, the strongest ink at 255. */
function inkOnBlack(grey: Uint8Array, width: number, height: number): Uint8Array {
  const { inverted, peak, floor, blank } = inkStatistics(grey, width, height);
  const out = new Uint8Array(grey.length);
  if (blank) return out;
  const gain = 255 / (peak - floor);
  for (let i = 0; i < grey.length; i++) {
    const v = inverted ? 255 - (grey[i] as number) : (grey[i] as number);
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
