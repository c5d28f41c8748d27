/**
 * A digit image with no ink in it. The model answers any input, and for a blank one its answer is
 * confident and meaningless (the shipped MNIST model says "1" with p 0.98), so such an image is
 * refused rather than answered: a confident wrong answer is worse than an error the client can act on.
 *
 * Kept apart from imagePreprocess.ts, which calls it at one point (once it has found no stroke to
 * crop to), so that the two can change independently.
 */

/** An image with nothing to classify; the message says why. */
export class BlankImageError extends Error {
  override name = "BlankImageError";
}

/** Grey levels (0-255) within which an image counts as one uniform colour (imagePreprocess's MIN_CONTRAST). */
const UNIFORM_WITHIN = 16;

/**
 * Why `grey` (the decoded image as 0-255 grey levels, transparency already flattened onto white)
 * holds no ink, for an image in which the preprocessing found no stroke.
 */
export function noInkReason(grey: Uint8Array): string {
  let min = 255;
  let max = 0;
  for (let i = 0; i < grey.length; i++) {
    const v = grey[i] as number;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (max - min < UNIFORM_WITHIN) {
    const levels = min === max ? `${min}` : `${min}-${max}`;
    if (min >= 255 - UNIFORM_WITHIN)
      return `every pixel is white (grey level ${levels} of 255; transparent pixels count as white)`;
    if (max < UNIFORM_WITHIN) return `every pixel is black (grey level ${levels} of 255)`;
    return `every pixel is the same grey (level ${levels} of 255)`;
  }
  return `nothing in it stands out from the background as a stroke (grey levels ${min}-${max} of 255: only isolated specks, or marks lighter than the paper)`;
}
