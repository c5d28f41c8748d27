/**
 * Resizes 8-bit pixels as sharp's default resize does, so that the "mnist-digit" fit (a few hundred
 * pixels) needs no second libvips pipeline. Separable, one axis at a time, and per axis:
 *  - shrinking: a Lanczos-3 kernel stretched by the shrink factor so that every source pixel
 *    contributes (libvips's reduce; PIL's resize does the same), pixel centres aligned;
 *  - enlarging: Catmull-Rom cubic interpolation, with output pixel i sampling the source at
 *    i / scale - 0.5: libvips enlarges with its bicubic interpolator and that phase (measured against
 *    sharp 0.35.5 / libvips 8.18 on impulses; imagePreprocessParity.test.ts holds the two together);
 *  - the same size: the pixels, copied.
 */

const LOBES = 3;

function cubic(x: number): number {
  const a = Math.abs(x);
  if (a < 1) return 1.5 * a ** 3 - 2.5 * a ** 2 + 1;
  if (a < 2) return -0.5 * a ** 3 + 2.5 * a ** 2 - 4 * a + 2;
  return 0;
}

function lanczos(x: number): number {
  if (x === 0) return 1;
  if (x <= -LOBES || x >= LOBES) return 0;
  const px = Math.PI * x;
  return (LOBES * Math.sin(px) * Math.sin(px / LOBES)) / (px * px);
}

/** For each output position along one axis: the first source index and the normalised weights. */
function weights(from: number, to: number): { first: number; taps: Float64Array }[] {
  const scale = to / from;
  const enlarging = scale > 1;
  const stretch = Math.max(1, 1 / scale);
  const support = enlarging ? 2 : LOBES * stretch;
  return Array.from({ length: to }, (_, i) => {
    const centre = enlarging ? i / scale - 0.5 : (i + 0.5) / scale - 0.5;
    // Beyond the edges the edge pixel repeats, as libvips extends images for its kernels.
    const lo = Math.ceil(centre - support);
    const hi = Math.floor(centre + support);
    const first = Math.min(from - 1, Math.max(0, lo));
    const last = Math.max(0, Math.min(from - 1, hi));
    const taps = new Float64Array(last - first + 1);
    let sum = 0;
    for (let j = lo; j <= hi; j++) {
      const w = enlarging ? cubic(j - centre) : lanczos((j - centre) / stretch);
      const at = Math.min(last, Math.max(first, j)) - first;
      taps[at] = (taps[at] as number) + w;
      sum += w;
    }
    for (let k = 0; k < taps.length; k++) (taps[k] as number) /= sum;
    return { first, taps };
  });
}

/** One-channel `width` x `height` pixels -> `toWidth` x `toHeight`, rounded and clamped to 0-255. */
export function lanczosResize(
  pixels: Uint8Array,
  width: number,
  height: number,
  toWidth: number,
  toHeight: number,
): Uint8Array {
  if (width === toWidth && height === toHeight) return pixels.slice();
  // Horizontal pass into floats (no rounding between the passes), then vertical.
  const across = weights(width, toWidth);
  const middle = new Float64Array(toWidth * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < toWidth; x++) {
      const { first, taps } = across[x] as { first: number; taps: Float64Array };
      let v = 0;
      for (let k = 0; k < taps.length; k++) v += (taps[k] as number) * (pixels[y * width + first + k] as number);
      middle[y * toWidth + x] = v;
    }
  }
  const down = weights(height, toHeight);
  const out = new Uint8Array(toWidth * toHeight);
  for (let y = 0; y < toHeight; y++) {
    const { first, taps } = down[y] as { first: number; taps: Float64Array };
    for (let x = 0; x < toWidth; x++) {
      let v = 0;
      for (let k = 0; k < taps.length; k++) v += (taps[k] as number) * (middle[(first + k) * toWidth + x] as number);
      out[y * toWidth + x] = Math.min(255, Math.max(0, Math.round(v)));
    }
  }
  return out;
}
