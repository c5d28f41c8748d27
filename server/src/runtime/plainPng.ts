/**
 * Decodes the PNGs that most requests are - small, 8-bit, not interlaced, with nothing in them that
 * changes pixels beyond what is stored - in a few tens of microseconds, where a libvips pipeline
 * costs 0.6-0.9 ms of CPU even for a 28x28 digit (docs/benchmarks.md, "Images"): more than the whole
 * CTM costs a request in a batch.
 *
 * It takes only what it can decode exactly as libvips does and says `undefined` to everything else
 * (a palette, 16 bits, interlacing, a colour profile, EXIF orientation, transparency by tRNS, a gamma
 * chunk, a chunk it does not know, a CRC or zlib stream that does not check out, a size above
 * MAX_PIXELS), which then goes to libvips unchanged: libvips stays the judge of every image this file
 * does not understand, and of every error. The size was checked against the server's limits from the
 * header before this runs, and inflating stops at the size the header declares.
 */
import { crc32, inflateSync } from "node:zlib";

/** Interleaved 8-bit pixels, row by row. */
export interface RawPixels {
  data: Uint8Array;
  width: number;
  height: number;
  /** 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA. */
  channels: 1 | 2 | 3 | 4;
}

/**
 * Above this many pixels, decoding goes to libvips on the thread pool: a 256 x 256 image inflates
 * and unfilters in well under a millisecond on the event loop; larger ones would hold it up.
 */
export const MAX_PIXELS = 256 * 256;

/** PNG colour type -> channels, for the types decoded here (3, palette, is not). */
const CHANNELS: Record<number, RawPixels["channels"]> = { 0: 1, 4: 2, 2: 3, 6: 4 };
/** Chunks that do not change the pixels libvips decodes; any other chunk sends the image to libvips. */
const INERT = new Set(["IHDR", "IDAT", "IEND", "tEXt", "zTXt", "iTXt", "tIME", "pHYs"]);

/** The pixels of a plain PNG, or `undefined` when libvips should decode it (see the file comment). */
export function decodePlainPng(png: Uint8Array): RawPixels | undefined {
  const bytes = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  const idat: Buffer[] = [];
  let header: { width: number; height: number; channels: RawPixels["channels"] } | undefined;
  let ended = false;
  for (let at = 8; at + 12 <= bytes.length && !ended; ) {
    const length = bytes.readUInt32BE(at);
    const end = at + 12 + length;
    if (end > bytes.length) return undefined;
    const type = bytes.toString("latin1", at + 4, at + 8);
    if (!INERT.has(type)) return undefined;
    if (crc32(bytes.subarray(at + 4, at + 8 + length)) !== bytes.readUInt32BE(at + 8 + length)) return undefined;
    const body = bytes.subarray(at + 8, at + 8 + length);
    if (type === "IHDR") {
      if (header || length !== 13) return undefined;
      const [depth, colour, compression, filter, interlace] = body.subarray(8, 13);
      const channels = CHANNELS[colour as number];
      if (depth !== 8 || !channels || compression !== 0 || filter !== 0 || interlace !== 0) return undefined;
      header = { width: body.readUInt32BE(0), height: body.readUInt32BE(4), channels };
    } else if (type === "IDAT") {
      idat.push(body);
    } else if (type === "IEND") {
      ended = true;
    }
    at = end;
  }
  if (!header || !ended || idat.length === 0) return undefined;
  const { width, height, channels } = header;
  if (width === 0 || height === 0 || width * height > MAX_PIXELS) return undefined;
  const stride = width * channels;
  const expected = height * (stride + 1);
  let filtered: Buffer;
  try {
    filtered = inflateSync(Buffer.concat(idat), { maxOutputLength: expected });
  } catch {
    return undefined;
  }
  if (filtered.length !== expected) return undefined;
  const data = unfilter(filtered, height, stride, channels);
  return data && { data, width, height, channels };
}

/** Undoes the per-row filters (PNG spec, section 9); `undefined` for an unknown filter type. */
function unfilter(filtered: Uint8Array, height: number, stride: number, bpp: number): Uint8Array | undefined {
  const out = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const type = filtered[y * (stride + 1)] as number;
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    const up = row - stride;
    for (let x = 0; x < stride; x++) {
      const raw = filtered[src + x] as number;
      const a = x >= bpp ? (out[row + x - bpp] as number) : 0;
      const b = y > 0 ? (out[up + x] as number) : 0;
      let value: number;
      if (type === 0) value = raw;
      else if (type === 1) value = raw + a;
      else if (type === 2) value = raw + b;
      else if (type === 3) value = raw + ((a + b) >> 1);
      else if (type === 4) {
        const c = x >= bpp && y > 0 ? (out[up + x - bpp] as number) : 0;
        value = raw + paeth(a, b, c);
      } else return undefined;
      out[row + x] = value;
    }
  }
  return out;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}
