/**
 * The default bound on an input image's width x height, from what the served models take. Every
 * pixel of a PNG is decoded (JPEG alone can be decoded at a fraction of its size), and a 7000 x 7000
 * PNG of 160 KB costs about 1.8 CPU-seconds before anything is known about it; a 28 x 28 model gains
 * nothing from a picture of more than a few thousand pixels a side. So the bound is 4096 times the
 * largest served input's pixels (64 times its width and height), but never below a 4096 x 4096 photo
 * (phones take 12 MP; those must pass) nor above the 50 M pixels any model is given.
 */

/** Always accepted: a 4096 x 4096 photo. */
export const PHOTO_PIXELS = 4096 * 4096;
/** Never exceeded by the default. */
export const MAX_DEFAULT_PIXELS = 50_000_000;
const PIXELS_PER_INPUT_PIXEL = 64 * 64;

/** `inputPixels`: height x width of each served image input (none: the models take tensors only). */
export function defaultImagePixels(inputPixels: readonly number[]): number {
  const largest = Math.max(0, ...inputPixels);
  return Math.min(MAX_DEFAULT_PIXELS, Math.max(PHOTO_PIXELS, largest * PIXELS_PER_INPUT_PIXEL));
}
