/**
 * The request limits, over real gRPC against the shipped model: image formats and sizes checked from
 * the header before any pixel is decoded (decompression bombs included), --max-ticks,
 * --max-message-bytes and --max-concurrent-streams. Every refusal names the field, the bound and the
 * flag that set it, and the server keeps serving afterwards.
 */
import assert from "node:assert/strict";
import * as http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import sharp from "sharp";
import {
  failure,
  MODEL_NAME,
  readModelJson,
  type Sample,
  samples,
  startTestServer,
  type TestServer,
} from "../../../tools/harness/testServer.ts";
import { parseConfig, type RequestLimits, type ServerConfig } from "../../src/config.ts";
import { PHOTO_PIXELS } from "../../src/runtime/imagePixelLimit.ts";
import { type ClassifyRequestMessage, loadProtocol } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { pngBomb, truncatedPng } from "../support/pngBomb.ts";

const DEFAULTS = (parseConfig([], {}) as ServerConfig).limits;
const limits = (overrides: Partial<RequestLimits>): RequestLimits => ({ ...DEFAULTS, ...overrides });
const image = (data: Uint8Array, extra: Partial<ClassifyRequestMessage> = {}): ClassifyRequestMessage => ({
  model: MODEL_NAME,
  image: { data },
  ...extra,
});

/** Classifies `sample` and checks the answer, to show the server still serves. */
async function classifiesCorrectly(t: TestServer, sample: Sample): Promise<void> {
  const response = await t.client.classify(image(sample.png));
  assert.equal(response.top_k[0]?.index, sample.label, `${sample.file} is a ${sample.label}`);
}

describe("image limits, with the default limits", () => {
  let t: TestServer;
  let sample: Sample;
  before(async () => {
    t = await startTestServer();
    sample = samples()[0] as Sample;
  });
  after(() => t.close());

  it("refuses a decompression bomb from its header, without allocating its bitmap", async () => {
    // 40000 x 40000 all-black pixels: 194 KB of PNG, a 1.6 GB bitmap once decoded (a byte a pixel).
    const side = 40_000;
    const bomb = await pngBomb(side, side);
    assert.ok(bomb.length < 300_000, `the bomb is ${bomb.length} bytes`);
    const rssBefore = process.memoryUsage().rss;
    const error = await failure(t.client.classify(image(bomb)));
    const grown = process.memoryUsage().rss - rssBefore;
    assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(
      error.details,
      `input.image.data is ${side} x ${side} pixels (from its PNG header), beyond the ${DEFAULTS.maxImageSide} pixels a side this server accepts (--max-image-side)`,
    );
    // The bitmap would be side * side bytes; refusing from the header allocates next to nothing.
    assert.ok(grown < (side * side) / 16, `resident memory grew by ${(grown / 2 ** 20).toFixed(0)} MiB`);
    await classifiesCorrectly(t, sample);
  });

  it("refuses an image within --max-image-side but beyond --max-image-pixels, from its header", async () => {
    const side = 16_000; // 256 megapixels, each side within the default 16384
    const error = await failure(t.client.classify(image(await pngBomb(side, side))));
    assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(
      error.details,
      `input.image.data is ${side} x ${side} pixels (from its PNG header) = ${side * side} pixels, beyond the ${PHOTO_PIXELS} this server accepts (--max-image-pixels)`,
    );
  });

  it("reads the size from the header alone: a truncated file declaring 100000 x 100000 is refused for its size", async () => {
    const error = await failure(t.client.classify(image(truncatedPng(100_000, 100_000))));
    assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
    assert.match(
      error.details,
      /^input\.image\.data is 100000 x 100000 pixels \(from its PNG header\).*--max-image-side/,
    );
  });

  it("names the format of what it refuses, and the accepted list, before libvips sees it", async () => {
    const accepted = "send PNG, JPEG, WebP, GIF or TIFF (--image-formats)";
    const refused: [string, Uint8Array][] = [
      ["SVG", Buffer.from('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"/>')],
      ["PDF", Buffer.from("%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n")],
      ["AVIF", Buffer.from("\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf", "latin1")],
      ["HEIF", Buffer.from("\0\0\0\x18ftypheic\0\0\0\0mif1heic", "latin1")],
      ["BMP", Buffer.concat([Buffer.from("BM"), Buffer.alloc(60)])],
    ];
    for (const [name, data] of refused) {
      const error = await failure(t.client.classify(image(data)));
      assert.equal(error.code, grpc.status.INVALID_ARGUMENT, name);
      assert.equal(error.details, `input.image.data is ${name}, which is not supported; ${accepted}`);
    }
    const text = await failure(t.client.classify(image(Buffer.from("hello, this is text"))));
    assert.equal(text.details, `input.image.data is not an image in an accepted format; ${accepted}`);
  });
});

describe("request limits set by flags", () => {
  let t: TestServer;
  let sample: Sample;
  const maxTicks = 5;
  const maxMessageBytes = 64 * 1024;
  const maxConcurrentStreams = 2;
  before(async () => {
    t = await startTestServer({
      limits: limits({ maxTicks, maxMessageBytes, maxConcurrentStreams, imageFormats: ["png"] }),
    });
    sample = samples()[0] as Sample;
  });
  after(() => t.close());

  it("--image-formats png refuses a JPEG, naming it and the list, and still reads PNG", async () => {
    const jpeg = await sharp(sample.png).jpeg().toBuffer();
    const error = await failure(t.client.classify(image(jpeg)));
    assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(error.details, "input.image.data is JPEG, which is not supported; send PNG (--image-formats)");
    await classifiesCorrectly(t, sample);
  });

  it("--max-ticks caps the default and refuses a larger halt_policy.max_ticks", async () => {
    const { ticks } = readModelJson<{ ticks: { trained: number; max: number } }>("manifest.json");
    assert.ok(ticks.trained > maxTicks && ticks.max > maxTicks, "the model alone would allow more");
    // Threshold 1 runs until max_ticks, so the ticks used are the cap itself.
    const capped = await t.client.classify(image(sample.png, { halt_policy: { certainty_threshold: 1 } }));
    assert.equal(capped.ticks_used, maxTicks);
    assert.equal(capped.applied_policy?.max_ticks, maxTicks);
    const plain = await t.client.classify(image(sample.png));
    assert.ok(plain.ticks_used <= maxTicks, `default request ran ${plain.ticks_used} ticks`);
    const error = await failure(t.client.classify(image(sample.png, { halt_policy: { max_ticks: maxTicks + 1 } })));
    assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
    assert.match(
      error.details,
      new RegExp(
        `^halt_policy\\.max_ticks must be in \\[1, ${maxTicks}\\] for model ${MODEL_NAME} \\(.*--max-ticks.*\\), got ${maxTicks + 1}$`,
      ),
    );
    const exact = await t.client.classify(
      image(sample.png, { halt_policy: { max_ticks: maxTicks, certainty_threshold: 1 } }),
    );
    assert.equal(exact.ticks_used, maxTicks);
  });

  it("--max-message-bytes refuses a larger message with RESOURCE_EXHAUSTED and keeps serving", async () => {
    const big = Buffer.concat([sample.png, Buffer.alloc(100 * 1024 - sample.png.length, 7)]);
    const error = await failure(t.client.classify(image(big)));
    assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(
      error.details,
      `the request message is ${100 * 1024 + 19} bytes, beyond the ${maxMessageBytes} this server reads (--max-message-bytes)`,
    );
    // Just under the limit the message is read, and the PNG (trailing bytes and all) classified.
    const fits = Buffer.concat([sample.png, Buffer.alloc(maxMessageBytes - 1024 - sample.png.length, 0)]);
    const response = await t.client.classify(image(fits));
    assert.equal(response.top_k[0]?.index, sample.label);
    await classifiesCorrectly(t, sample);
  });

  it("--max-concurrent-streams: the server advertises N, refuses a connection's streams beyond N, and serves the first N", async () => {
    const classify = loadProtocol().ctmService.Classify as grpc.MethodDefinition<ClassifyRequestMessage, unknown>;
    const body = classify.requestSerialize(image(sample.png));
    const message = Buffer.alloc(5 + body.length);
    message.writeUInt32BE(body.length, 1);
    body.copy(message, 5);
    const session = http2.connect(`http://${t.address}`);
    try {
      const advertised = new Promise<number | undefined>((resolve) =>
        session.once("remoteSettings", (settings) => resolve(settings.maxConcurrentStreams)),
      );
      // Opened at once, before the client has read the server's SETTINGS, so the client cannot hold
      // any back: whatever limit applies, the server applies it.
      const opened = 2 * maxConcurrentStreams + 1;
      const streams = Array.from({ length: opened }, () =>
        session.request(
          {
            ":method": "POST",
            ":path": "/ctm.v1.CtmService/Classify",
            "content-type": "application/grpc",
            te: "trailers",
          },
          { endStream: false },
        ),
      );
      const outcomes = await Promise.all(
        streams.map(
          (stream) =>
            new Promise<{ id: number; refused: boolean; grpcStatus: string | undefined }>((resolve) => {
              let grpcStatus: string | undefined;
              stream.on("trailers", (headers) => {
                grpcStatus = headers["grpc-status"] as string;
              });
              stream.on("data", () => {});
              stream.on("error", () => {}); // a refused stream errors; its rstCode says why
              stream.on("close", () =>
                resolve({
                  id: stream.id ?? 0,
                  refused: stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM,
                  grpcStatus,
                }),
              );
              stream.end(message);
            }),
        ),
      );
      assert.equal(await advertised, maxConcurrentStreams);
      const served = outcomes.filter((o) => o.grpcStatus === "0");
      const refused = outcomes.filter((o) => o.refused);
      assert.equal(served.length, maxConcurrentStreams, JSON.stringify(outcomes));
      assert.equal(refused.length, opened - maxConcurrentStreams, JSON.stringify(outcomes));
      // The first N streams of the connection are the ones served.
      const firstIds = outcomes
        .map((o) => o.id)
        .sort((a, b) => a - b)
        .slice(0, maxConcurrentStreams);
      assert.deepEqual(
        served.map((o) => o.id).sort((a, b) => a - b),
        firstIds,
      );
    } finally {
      session.close();
    }
  });

  it("--max-concurrent-streams: a gRPC client that knows the limit queues its calls, and every one succeeds", async () => {
    const calls = Array.from({ length: 4 * maxConcurrentStreams }, () => t.client.classify(image(sample.png)));
    for (const response of await Promise.all(calls)) assert.equal(response.top_k[0]?.index, sample.label);
  });
});
