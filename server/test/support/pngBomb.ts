/**
 * Hand-written PNG files for the limit tests: a decompression bomb (a valid all-black PNG whose
 * compressed data is a few hundred kilobytes while its bitmap is gigabytes) and files whose header
 * declares any size at all, with correct chunk CRCs so that a decoder trusts them.
 */
import { crc32, createDeflate } from "node:zlib";

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** One chunk: length, type, data, and the CRC of type and data. */
export function pngChunk(type: string, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const typed = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const out = Buffer.alloc(typed.length + 8);
  out.writeUInt32BE(data.length, 0);
  typed.copy(out, 4);
  out.writeUInt32BE(crc32(typed), typed.length + 4);
  return out;
}

/** An IHDR for a 1-bit greyscale image, the cheapest to build and the most compressible. */
export function pngHeader(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 1; // bit depth
  ihdr[9] = 0; // greyscale
  return Buffer.concat([SIGNATURE, pngChunk("IHDR", ihdr)]);
}

/**
 * A complete, valid all-black 1-bit PNG of width x height. The rows (a filter byte and width / 8
 * zero bytes each) are deflated as a stream, so building a gigapixel bomb never holds its raw rows.
 */
export async function pngBomb(width: number, height: number): Promise<Buffer> {
  const rowBytes = Math.ceil(width / 8) + 1;
  const deflate = createDeflate({ level: 9 });
  const compressed: Buffer[] = [];
  deflate.on("data", (chunk: Buffer) => compressed.push(chunk));
  const ended = new Promise<void>((resolve, reject) => {
    deflate.on("end", resolve);
    deflate.on("error", reject);
  });
  const rowsPerWrite = 256;
  const block = Buffer.alloc(rowBytes * rowsPerWrite);
  for (let y = 0; y < height; y += rowsPerWrite) {
    const rows = Math.min(rowsPerWrite, height - y);
    if (!deflate.write(block.subarray(0, rowBytes * rows))) await new Promise((r) => deflate.once("drain", r));
  }
  deflate.end();
  await ended;
  return Buffer.concat([pngHeader(width, height), pngChunk("IDAT", Buffer.concat(compressed)), pngChunk("IEND")]);
}

/** The header of a width x height PNG followed by a few bytes of its data and nothing else. */
export function truncatedPng(width: number, height: number): Buffer {
  return Buffer.concat([pngHeader(width, height), pngChunk("IDAT", Buffer.from([0x78, 0xda, 0x63, 0x60]))]);
}
