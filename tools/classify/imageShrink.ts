/**
 * A large image scaled down before it is sent: a phone photo is 3-8 MB and 12 megapixels, and the
 * model reads 28 x 28 (the server's own preprocessing reduces any image to at most 256 pixels a side
 * before it looks for the digit). Sending it whole costs the upload, the server's --max-image-bytes and
 * a full decode; a version 1024 pixels on its longer side (or eight times the model's input, if that is
 * larger) gives the same answer.
 *
 * The copy keeps what the server would make of the original: EXIF orientation applied, transparency
 * flattened onto white paper. A PNG stays PNG (drawings and mazes keep their exact colours); anything
 * else becomes a high-quality JPEG.
 */
import sharp, { type Metadata } from "sharp";

/** Images within this many bytes and pixels a side are sent as they are. */
const KEEP_BYTES = 1024 * 1024;
const MIN_SIDE = 1024;

export interface ShrunkImage {
  data: Buffer;
  /** What was done, for the user; undefined when the image went as it was. */
  note?: string;
}

/** `inputSide`: the larger of the model's input width and height. */
export async function shrinkForSending(data: Buffer, inputSide: number): Promise<ShrunkImage> {
  const side = Math.max(MIN_SIDE, 8 * inputSide);
  let meta: Metadata;
  try {
    meta = await sharp(data).metadata();
  } catch {
    // Not an image sharp reads: the server says what is wrong with it.
    return { data };
  }
  const { width = 0, height = 0 } = meta;
  if (data.length <= KEEP_BYTES && width <= side && height <= side) return { data };
  let image = sharp(data, { pages: 1, limitInputPixels: false })
    .rotate()
    .flatten({ background: { r: 255, g: 255, b: 255 } })
    .resize(side, side, { fit: "inside", withoutEnlargement: true });
  image = meta.format === "png" ? image.png() : image.jpeg({ quality: 92 });
  const { data: smaller, info } = await image.toBuffer({ resolveWithObject: true });
  if (smaller.length >= data.length && width <= side && height <= side) return { data };
  return {
    data: smaller,
    note: `${width} x ${height} pixels, ${megabytes(data.length)}: sent as ${info.width} x ${info.height}, ${megabytes(smaller.length)} (the model reads ${inputSide} pixels a side; --no-shrink sends it as it is)`,
  };
}

function megabytes(bytes: number): string {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.ceil(bytes / 1e3)} KB`;
}
