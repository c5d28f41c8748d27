/**
 * What an encoded image says about itself in its first bytes: its format, from the magic number, and
 * its width and height, from the header. Read here, in plain TypeScript, so that the server can refuse
 * a format it does not accept or a size beyond its limits before libvips sees a single byte: a format
 * such as SVG or PDF would otherwise reach an interpreter (librsvg, poppler), and a decompression bomb
 * (a few hundred kilobytes declaring a gigapixel) would otherwise be allocated before it could fail.
 *
 * Raster formats the server can decode get their size read; the others are only named, so that the
 * refusal can say what the client sent.
 */

/** The raster formats whose size this file reads (sharp's names for them): all the server decodes. */
export const RASTER_FORMATS = ["png", "jpeg", "webp", "gif", "tiff"] as const;
export type RasterFormat = (typeof RASTER_FORMATS)[number];

export type ImageHeader =
  | { format: RasterFormat; width: number; height: number }
  /** A raster signature whose header ends, or breaks, before the size: `problem` says where. */
  | { format: RasterFormat; problem: string }
  /** A format recognised only to name it in a refusal (e.g. "SVG", "PDF", "HEIF"). */
  | { format: "other"; name: string }
  | { format: "unknown" };

export const FORMAT_NAMES: Record<RasterFormat, string> = {
  png: "PNG",
  jpeg: "JPEG",
  webp: "WebP",
  gif: "GIF",
  tiff: "TIFF",
};

export function readImageHeader(data: Uint8Array): ImageHeader {
  const bytes = new Bytes(data);
  if (bytes.startsWith([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return sized("png", png(bytes));
  if (bytes.startsWith([0xff, 0xd8, 0xff])) return sized("jpeg", jpeg(bytes));
  if (bytes.ascii(0, 4) === "RIFF" && bytes.ascii(8, 4) === "WEBP") return sized("webp", webp(bytes));
  if (bytes.ascii(0, 6) === "GIF87a" || bytes.ascii(0, 6) === "GIF89a") return sized("gif", gif(bytes));
  if (bytes.ascii(0, 2) === "II" || bytes.ascii(0, 2) === "MM") {
    const version = bytes.u16(2, bytes.ascii(0, 2) === "II");
    if (version === 42 || version === 43) return sized("tiff", tiff(bytes, version === 43));
  }
  const name = otherFormat(bytes);
  return name ? { format: "other", name } : { format: "unknown" };
}

/** A size, or the reason there is none. */
type Size = { width: number; height: number } | string;

function sized(format: RasterFormat, size: Size): ImageHeader {
  return typeof size === "string" ? { format, problem: size } : { format, ...size };
}

/** Bounds-checked big- and little-endian reads; a read past the end is `undefined`, never a throw. */
class Bytes {
  constructor(readonly data: Uint8Array) {}

  get length(): number {
    return this.data.length;
  }

  startsWith(prefix: readonly number[]): boolean {
    return prefix.every((b, i) => this.data[i] === b);
  }

  ascii(at: number, length: number): string {
    if (at + length > this.data.length) return "";
    return String.fromCharCode(...this.data.subarray(at, at + length));
  }

  u8(at: number): number | undefined {
    return this.data[at];
  }

  u16(at: number, little: boolean): number | undefined {
    if (at + 2 > this.data.length) return undefined;
    const [a, b] = [this.data[at] as number, this.data[at + 1] as number];
    return little ? a | (b << 8) : (a << 8) | b;
  }

  u24le(at: number): number | undefined {
    if (at + 3 > this.data.length) return undefined;
    return (this.data[at] as number) | ((this.data[at + 1] as number) << 8) | ((this.data[at + 2] as number) << 16);
  }

  u32(at: number, little: boolean): number | undefined {
    if (at + 4 > this.data.length) return undefined;
    const view = new DataView(this.data.buffer, this.data.byteOffset + at, 4);
    return view.getUint32(0, little);
  }

  /** A 64-bit unsigned value as a number (exact below 2^53, which every offset and size here is). */
  u64(at: number, little: boolean): number | undefined {
    if (at + 8 > this.data.length) return undefined;
    const view = new DataView(this.data.buffer, this.data.byteOffset + at, 8);
    return Number(view.getBigUint64(0, little));
  }
}

/** PNG: the first chunk must be IHDR, whose first eight bytes are the width and height. */
function png(bytes: Bytes): Size {
  if (bytes.ascii(12, 4) !== "IHDR") return "its first chunk is not IHDR";
  const width = bytes.u32(16, false);
  const height = bytes.u32(20, false);
  if (width === undefined || height === undefined) return "it ends inside the IHDR chunk";
  return { width, height };
}

/** Start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC are not frames. */
const JPEG_FRAMES = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

/** JPEG: walk the marker segments up to the first start-of-frame, which holds the size. */
function jpeg(bytes: Bytes): Size {
  let at = 2;
  for (;;) {
    if (bytes.u8(at) !== 0xff) return at >= bytes.length ? "it ends before its frame header" : "a segment is corrupt";
    while (bytes.u8(at) === 0xff) at++; // fill bytes
    const marker = bytes.u8(at);
    if (marker === undefined) return "it ends before its frame header";
    at++;
    // Markers without a length: TEM and the restart markers.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue;
    if (marker === 0xd9 || marker === 0xda) return "its image data starts before any frame header";
    const length = bytes.u16(at, false);
    if (length === undefined) return "it ends before its frame header";
    if (length < 2) return "a segment is corrupt";
    if (JPEG_FRAMES.has(marker)) {
      const height = bytes.u16(at + 3, false);
      const width = bytes.u16(at + 5, false);
      if (width === undefined || height === undefined) return "it ends inside its frame header";
      return { width, height };
    }
    at += length;
  }
}

/** WebP: the first chunk is lossy (VP8), lossless (VP8L) or extended (VP8X, which holds the canvas). */
function webp(bytes: Bytes): Size {
  const chunk = bytes.ascii(12, 4);
  if (chunk === "VP8 ") {
    if (bytes.u8(23) !== 0x9d || bytes.u8(24) !== 0x01 || bytes.u8(25) !== 0x2a) {
      return bytes.length < 26 ? "it ends before its frame header" : "its VP8 frame header is corrupt";
    }
    const width = bytes.u16(26, true);
    const height = bytes.u16(28, true);
    if (width === undefined || height === undefined) return "it ends inside its frame header";
    return { width: width & 0x3fff, height: height & 0x3fff };
  }
  if (chunk === "VP8L") {
    if (bytes.u8(20) !== 0x2f) return bytes.length < 21 ? "it ends before its header" : "its VP8L header is corrupt";
    const bits = bytes.u32(21, true);
    if (bits === undefined) return "it ends inside its header";
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (chunk === "VP8X") {
    const width = bytes.u24le(24);
    const height = bytes.u24le(27);
    if (width === undefined || height === undefined) return "it ends inside its VP8X header";
    return { width: width + 1, height: height + 1 };
  }
  return bytes.length < 16 ? "it ends before its first chunk" : "its first chunk is not VP8, VP8L or VP8X";
}

/** GIF: the logical screen, which every frame is drawn onto (and the decoder allocates). */
function gif(bytes: Bytes): Size {
  const width = bytes.u16(6, true);
  const height = bytes.u16(8, true);
  if (width === undefined || height === undefined) return "it ends inside its screen descriptor";
  return { width, height };
}

/** TIFF (classic or BigTIFF): ImageWidth and ImageLength of the first directory, the page decoded. */
function tiff(bytes: Bytes, big: boolean): Size {
  const little = bytes.ascii(0, 2) === "II";
  const ifd = big ? bytes.u64(8, little) : bytes.u32(4, little);
  if (ifd === undefined) return "it ends inside its header";
  const count = big ? bytes.u64(ifd, little) : bytes.u16(ifd, little);
  if (count === undefined) return "its first directory lies beyond the end of the data";
  const [first, size] = big ? [ifd + 8, 20] : [ifd + 2, 12];
  let width: number | undefined;
  let height: number | undefined;
  for (let i = 0; i < count && (width === undefined || height === undefined); i++) {
    const entry = first + i * size;
    const tag = bytes.u16(entry, little);
    if (tag === undefined) break;
    if (tag !== 256 && tag !== 257) continue;
    const value = tiffValue(bytes, entry, little, big);
    if (value === undefined) return "its ImageWidth or ImageLength tag is corrupt";
    if (tag === 256) width = value;
    else height = value;
  }
  if (width === undefined || height === undefined) return "its first directory has no ImageWidth and ImageLength";
  return { width, height };
}

/** An inline SHORT, LONG or LONG8 value of one directory entry. */
function tiffValue(bytes: Bytes, entry: number, little: boolean, big: boolean): number | undefined {
  const type = bytes.u16(entry + 2, little);
  const at = entry + (big ? 12 : 8);
  if (type === 3) return bytes.u16(at, little);
  if (type === 4) return bytes.u32(at, little);
  if (type === 16 && big) return bytes.u64(at, little);
  return undefined;
}

const HEIF_BRANDS = new Set(["heic", "heix", "hevc", "hevx", "heim", "heis", "hevm", "hevs", "mif1", "msf1"]);

/** Formats that libvips (or a library it may be built with) could load, named for the refusal. */
function otherFormat(bytes: Bytes): string | undefined {
  const head = bytes.ascii(0, Math.min(bytes.length, 16));
  if (head.startsWith("%PDF")) return "PDF";
  if (head.startsWith("%!")) return "PostScript";
  if (bytes.ascii(4, 4) === "ftyp") {
    const brand = bytes.ascii(8, 4);
    if (brand === "avif" || brand === "avis") return "AVIF";
    if (HEIF_BRANDS.has(brand)) return "HEIF";
    if (brand === "jxl ") return "JPEG XL";
    return `ISO media (brand ${JSON.stringify(brand)})`;
  }
  if (bytes.startsWith([0xff, 0x0a]) || bytes.ascii(4, 4) === "JXL ") return "JPEG XL";
  if (bytes.ascii(4, 4) === "jP  " || bytes.startsWith([0xff, 0x4f, 0xff, 0x51])) return "JPEG 2000";
  if (head.startsWith("BM")) return "BMP";
  if (bytes.startsWith([0, 0, 1, 0])) return "ICO";
  if (head.startsWith("8BPS")) return "PSD";
  if (bytes.startsWith([0x76, 0x2f, 0x31, 0x01])) return "OpenEXR";
  if (head.startsWith("SIMPLE  =")) return "FITS";
  if (head.startsWith("#?RADIANCE") || head.startsWith("#?RGBE")) return "Radiance HDR";
  if (head.startsWith("MATLAB")) return "MATLAB";
  if (bytes.startsWith([0x08, 0xf2, 0xa6, 0xb6]) || bytes.startsWith([0xb6, 0xa6, 0xf2, 0x08])) return "VIPS";
  if (/^P[1-7F][\s]/.test(head)) return "PNM";
  if (looksLikeSvg(bytes)) return "SVG";
  return undefined;
}

/** SVG is XML: after an optional byte-order mark and whitespace, markup that opens an <svg> element. */
function looksLikeSvg(bytes: Bytes): boolean {
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes.data.subarray(0, 4096));
  return /^\uFEFF?\s*</.test(text) && /<svg[\s>/]/i.test(text);
}
