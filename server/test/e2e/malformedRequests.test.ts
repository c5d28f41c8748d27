/**
 * Every malformed request gets the right status and a message that names the problem, while a
 * well-formed request running at the same time is unaffected.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { ServiceError, status } from "@grpc/grpc-js";
import { status as Status } from "@grpc/grpc-js";
import sharp from "sharp";
import { failure, MODEL_NAME, samples, startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";
import type {
  ClassifyRequestMessage,
  ModelInfoMessage,
  TickUpdateMessage,
} from "../../src/transport/ctmV1/ctmProtocol.ts";

describe("malformed requests", () => {
  let t: TestServer;
  let model: ModelInfoMessage;
  let png: Buffer;
  let values: number[];

  before(async () => {
    t = await startTestServer();
    model = await t.client.getModel(MODEL_NAME);
    png = (samples()[0] as { png: Buffer }).png;
    values = new Array(model.input.shape.reduce((a, b) => a * b, 1)).fill(0);
  });
  after(() => t.close());

  const shape = () => `[${model.input.shape.join(", ")}]`;

  function cases(): [string, ClassifyRequestMessage, status, RegExp][] {
    const withTensor = (
      tensor: { shape: number[]; values: number[] },
      extra: Partial<ClassifyRequestMessage> = {},
    ) => ({
      model: MODEL_NAME,
      tensor,
      ...extra,
    });
    const image = (data: Uint8Array, extra: Partial<ClassifyRequestMessage> = {}) => ({
      model: MODEL_NAME,
      image: { data },
      ...extra,
    });
    const nan = [...values];
    nan[5] = Number.NaN;
    const infinite = [...values];
    infinite[9] = Number.POSITIVE_INFINITY;
    const beyond = [...values];
    beyond[3] = -1e6;
    const list: [string, ClassifyRequestMessage, status, RegExp][] = [
      [
        "no input",
        { model: MODEL_NAME },
        Status.INVALID_ARGUMENT,
        /^input must be set: send input\.image .* or input\.tensor/,
      ],
      [
        "no model",
        { image: { data: png } },
        Status.INVALID_ARGUMENT,
        /^model must name a loaded model \(loaded: mnist-ctm\/\d+\)/,
      ],
      [
        "unknown model",
        { model: "nope", image: { data: png } },
        Status.NOT_FOUND,
        /^model "nope" is not loaded \(loaded: mnist-ctm\/\d+\)/,
      ],
      [
        "unknown version",
        { model: MODEL_NAME, version: 99, image: { data: png } },
        Status.NOT_FOUND,
        /version 99 is not loaded/,
      ],
      ["empty image", image(new Uint8Array()), Status.INVALID_ARGUMENT, /^input\.image\.data is empty$/],
      [
        "not an image",
        image(Buffer.from("hello, this is text")),
        Status.INVALID_ARGUMENT,
        /^input\.image\.data is not an image in an accepted format; send PNG, JPEG, WebP, GIF or TIFF \(--image-formats\)$/,
      ],
      [
        "truncated PNG",
        image(png.subarray(0, Math.floor(png.length / 2))),
        Status.INVALID_ARGUMENT,
        /^input\.image\.data could not be decoded/,
      ],
      [
        "SVG image",
        image(
          Buffer.from(
            '<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><circle cx="14" cy="14" r="8"/></svg>',
          ),
        ),
        Status.INVALID_ARGUMENT,
        /^input\.image\.data is SVG, which is not supported; send PNG, JPEG, WebP, GIF or TIFF \(--image-formats\)$/,
      ],
      [
        "PNG header cut short",
        image(png.subarray(0, 20)),
        Status.INVALID_ARGUMENT,
        /^input\.image\.data is not a readable PNG image: it ends inside the IHDR chunk$/,
      ],
      [
        "PNG declaring an empty image",
        image(Buffer.concat([png.subarray(0, 16), Buffer.alloc(8), png.subarray(24)])),
        Status.INVALID_ARGUMENT,
        /^input\.image\.data is 0 x 0 pixels \(from its PNG header\): an empty image$/,
      ],
      [
        "tensor shape",
        withTensor({ shape: [28, 28], values }),
        Status.INVALID_ARGUMENT,
        new RegExp(`^input\\.tensor\\.shape must be \\${shape()} for model mnist-ctm, got \\[28, 28\\]`),
      ],
      [
        "tensor size",
        withTensor({ shape: model.input.shape, values: values.slice(1) }),
        Status.INVALID_ARGUMENT,
        /^input\.tensor\.values must have \d+ values for shape .*, got \d+/,
      ],
      [
        "NaN",
        withTensor({ shape: model.input.shape, values: nan }),
        Status.INVALID_ARGUMENT,
        /^input\.tensor\.values\[5\] is NaN; every value must be finite/,
      ],
      [
        "Infinity",
        withTensor({ shape: model.input.shape, values: infinite }),
        Status.INVALID_ARGUMENT,
        /^input\.tensor\.values\[9\] is Infinity/,
      ],
      [
        "tensor value no pixel normalises to",
        withTensor({ shape: model.input.shape, values: beyond }),
        Status.INVALID_ARGUMENT,
        /^input\.tensor\.values\[3\] is -1000000; model mnist-ctm takes normalised pixels, \(pixel \/ 255 - mean\) \/ std, in \[-0\.4242, 2\.8215\] for channel 0$/,
      ],
      [
        "threshold 1.5",
        image(png, { halt_policy: { certainty_threshold: 1.5 } }),
        Status.INVALID_ARGUMENT,
        /^halt_policy\.certainty_threshold must be in \(0, 1\], got 1\.5$/,
      ],
      ["threshold -1", image(png, { halt_policy: { certainty_threshold: -1 } }), Status.INVALID_ARGUMENT, /got -1$/],
      [
        "target accuracy 2",
        image(png, { halt_policy: { target_accuracy: 2 } }),
        Status.INVALID_ARGUMENT,
        /^halt_policy\.target_accuracy must be in \(0, 1\], got 2$/,
      ],
      [
        "threshold and target",
        image(png, { halt_policy: { certainty_threshold: 0.5, target_accuracy: 0.5 } }),
        Status.INVALID_ARGUMENT,
        /^set at most one of halt_policy\.certainty_threshold \(0\.5\) and halt_policy\.target_accuracy \(0\.5\)/,
      ],
      [
        "max ticks",
        image(png, { halt_policy: { max_ticks: model.max_ticks + 1 } }),
        Status.INVALID_ARGUMENT,
        new RegExp(`^halt_policy\\.max_ticks must be in \\[1, ${model.max_ticks}\\] for model mnist-ctm`),
      ],
      [
        "min above max",
        image(png, { halt_policy: { min_ticks: 5, max_ticks: 4 } }),
        Status.INVALID_ARGUMENT,
        /^halt_policy\.min_ticks must be in \[1, max_ticks = 4\], got 5$/,
      ],
      [
        "patience",
        image(png, { halt_policy: { patience: model.max_ticks + 1, max_ticks: model.max_ticks } }),
        Status.INVALID_ARGUMENT,
        /^halt_policy\.patience must be in \[0, max_ticks = \d+\]/,
      ],
      [
        "top_k",
        image(png, { top_k: model.labels.length + 1 }),
        Status.INVALID_ARGUMENT,
        new RegExp(`^top_k must be in \\[0, ${model.labels.length}\\] for model mnist-ctm`),
      ],
    ];
    const highest = Math.max(...(model.calibration?.certified ?? []).map((p) => p.confidence));
    list.push(
      [
        "target confidence above what the calibration certifies",
        image(png, { halt_policy: { target_accuracy: 0.9, target_confidence: 0.99999 } }),
        Status.INVALID_ARGUMENT,
        new RegExp(
          `^halt_policy\\.target_confidence must be in \\(0, ${highest}\\] for model mnist-ctm .*got 0\\.99999$`,
        ),
      ],
      [
        "negative target confidence",
        image(png, { halt_policy: { target_consistency: 0.9, target_confidence: -0.5 } }),
        Status.INVALID_ARGUMENT,
        /^halt_policy\.target_confidence must be in \(0, [0-9.]+\] for model mnist-ctm .*got -0\.5$/,
      ],
      [
        "target confidence without a target",
        image(png, { halt_policy: { certainty_threshold: 0.9, target_confidence: 0.9 } }),
        Status.INVALID_ARGUMENT,
        /^halt_policy\.target_confidence \(0\.9\) applies only with halt_policy\.target_accuracy or halt_policy\.target_consistency$/,
      ],
      [
        "target consistency out of range",
        image(png, { halt_policy: { target_consistency: 1.5 } }),
        Status.INVALID_ARGUMENT,
        /^halt_policy\.target_consistency must be in \(0, 1\], got 1\.5$/,
      ],
      [
        "two targets",
        image(png, { halt_policy: { target_accuracy: 0.9, target_consistency: 0.9 } }),
        Status.INVALID_ARGUMENT,
        /^set at most one of halt_policy\.target_accuracy \(0\.9\) and halt_policy\.target_consistency \(0\.9\)$/,
      ],
    );
    return list;
  }

  it("answers each with its status and a message naming the problem, and others keep working", async () => {
    const full = { min_ticks: model.trained_ticks, max_ticks: model.trained_ticks };
    const healthy = t.client.collect({ model: MODEL_NAME, image: { data: png }, halt_policy: full });

    for (const method of ["classify", "collect"] as const) {
      await Promise.all(
        cases().map(async ([name, request, code, message]) => {
          const error = await failure(t.client[method](request));
          assert.equal(error.code, code, `${method} ${name}: got ${error.code} ${error.details}`);
          assert.match(error.details, message, `${method} ${name}`);
        }),
      );
    }

    const ticks: TickUpdateMessage[] = await healthy;
    assert.equal(ticks.length, model.trained_ticks);
    assert.ok(ticks.at(-1)?.final);
    const after = await t.client.classify({ model: MODEL_NAME, image: { data: png } });
    assert.ok(after.ticks_used >= 1);
  });

  it("answers bytes that are not a ClassifyRequest with INVALID_ARGUMENT on both methods, not INTERNAL", async () => {
    // Field 4 (tensor) holds field 1 (shape, packed), which claims 5 bytes where 1 follows.
    const body = Buffer.from([0x22, 0x03, 0x0a, 0x05, 0x01]);
    const identity = (b: Buffer) => b;
    const unary = await new Promise<ServiceError>((resolve, reject) =>
      t.client.raw.makeUnaryRequest("/ctm.v1.CtmService/Classify", identity, identity, body, (error) =>
        error ? resolve(error) : reject(new Error("Classify accepted bytes that are not a message")),
      ),
    );
    const streamed = await new Promise<ServiceError>((resolve, reject) => {
      const call = t.client.raw.makeServerStreamRequest("/ctm.v1.CtmService/ClassifyStream", identity, identity, body);
      call.on("data", () => reject(new Error("ClassifyStream answered bytes that are not a message")));
      call.on("error", resolve);
    });
    for (const error of [unary, streamed]) {
      assert.equal(error.code, Status.INVALID_ARGUMENT, `${error.code} ${error.details}`);
      assert.match(error.details, /^the request \(5 bytes\) is not a valid ctm\.v1\.ClassifyRequest message: \S/);
    }
  });

  it("answers GetModel for an unknown model with NOT_FOUND", async () => {
    const error = await failure(t.client.getModel("nope"));
    assert.equal(error.code, Status.NOT_FOUND);
    assert.match(error.details, /^model "nope" is not loaded/);
  });

  it("accepts every listed image format", async () => {
    const formats = {
      png: sharp(png).png(),
      jpeg: sharp(png).jpeg(),
      webp: sharp(png).webp(),
      gif: sharp(png).gif(),
      tiff: sharp(png).tiff(),
    };
    for (const [format, image] of Object.entries(formats)) {
      const response = await t.client.classify({ model: MODEL_NAME, image: { data: await image.toBuffer() } });
      assert.ok(response.ticks_used >= 1, format);
    }
  });
});
