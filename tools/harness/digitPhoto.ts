/**
 * Renders an MNIST sample (white digit on black, 28x28) the way a phone would see a digit written on
 * paper: dark ink on an unevenly lit, slightly noisy white page, larger, off-centre, JPEG-compressed.
 * Deterministic, so a failing test reproduces.
 */
import sharp from "sharp";

export interface PhotoOptions {
  /** Digit height in pixels (the 28x28 sample is scaled to this). */
  size: number;
  canvas: { width: number; height: number };
  /** Top-left corner of the scaled sample on the canvas. */
  offset: { x: number; y: number };
  format: "jpeg" | "png" | "webp";
  /** JPEG quality (default 85); a phone saves at 90-98. */
  quality?: number;
}

export async function digitPhoto(samplePng: Uint8Array, options: PhotoOptions): Promise<Buffer> {
  const { size, canvas, offset } = options;
  const digit = await sharp(samplePng).greyscale().resize(size, size, { kernel: "cubic" }).raw().toBuffer();
  const page = Buffer.alloc(canvas.width * canvas.height);
  let seed = 12345;
  const noise = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return (seed / 2147483648 - 0.5) * 16;
  };
  for (let y = 0; y < canvas.height; y++) {
    for (let x = 0; x < canvas.width; x++) {
      // Light falls off towards the right: paper from 245 down to 215.
      const paper = 245 - (30 * x) / canvas.width + noise();
      const dx = x - offset.x;
      const dy = y - offset.y;
      const ink = dx >= 0 && dy >= 0 && dx < size && dy < size ? (digit[dy * size + dx] as number) / 255 : 0;
      page[y * canvas.width + x] = Math.max(0, Math.min(255, Math.round(paper * (1 - ink) + 35 * ink)));
    }
  }
  const image = sharp(page, { raw: { width: canvas.width, height: canvas.height, channels: 1 } });
  if (options.format === "jpeg") return image.jpeg({ quality: options.quality ?? 85 }).toBuffer();
  if (options.format === "webp") return image.webp({ quality: 90 }).toBuffer();
  return image.png().toBuffer();
}
