/**
 * A protobuf message's framing read without decoding it: which fields it holds and where their
 * payloads lie, so that a request's lengths can be weighed before grpc-js decodes a single value.
 */

/**
 * Calls `visit(field, wireType, payloadStart, payloadEnd)` for each field of the message in
 * bytes[from, to), without decoding any payload. Stops at the first malformed tag or length.
 */
export function forEachField(
  bytes: Uint8Array,
  from: number,
  to: number,
  visit: (field: number, wireType: number, start: number, end: number) => void,
): void {
  let at = from;
  const varint = (): number | undefined => {
    let value = 0;
    for (let shift = 0; shift < 64 && at < to; shift += 7) {
      const byte = bytes[at++] as number;
      // Past 2^53 the exact value does not matter: any such length runs past the end.
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
    return undefined;
  };
  while (at < to) {
    const tag = varint();
    if (tag === undefined) return;
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    let start = at;
    if (wireType === 0) {
      if (varint() === undefined) return;
    } else if (wireType === 1) {
      at += 8;
    } else if (wireType === 2) {
      const length = varint();
      if (length === undefined) return;
      start = at;
      at += length;
    } else if (wireType === 5) {
      at += 4;
    } else {
      return;
    }
    if (at > to) return;
    visit(field, wireType, start, at);
  }
}

/** Varints in bytes[from, to): one per byte below 0x80. */
export function varintCount(bytes: Uint8Array, from: number, to: number): number {
  let count = 0;
  for (let i = from; i < to; i++) if ((bytes[i] as number) < 0x80) count++;
  return count;
}
