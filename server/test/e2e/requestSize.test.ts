/**
 * How big a request may be: the message limit derived from the served model, the image and tensor
 * limits read from the framing before decoding, the bound on bytes all calls hold at once, and
 * error messages that quote a client's values cut short.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import { classifyRequestBytes } from "../../../tools/harness/index.ts";
import {
  failure,
  type GoldenCase,
  MODEL_NAME,
  metricValue,
  readModelJson,
  type Sample,
  samples,
  startTestServer,
  type TestServer,
  tensorRequest,
} from "../../../tools/harness/testServer.ts";
import { parseConfig, type RequestLimits, type ServerConfig } from "../../src/config.ts";
import { weighClassifyRequest } from "../../src/transport/ctmV1/classifyWeight.ts";
import { type ClassifyRequestMessage, loadProtocol } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { MAX_DETAILS_CHARS } from "../../src/transport/grpc/errorPolicy.ts";
import { OTHER_FIELDS_BYTES } from "../../src/transport/grpc/requestSize.ts";

const DEFAULTS = (parseConfig([], {}) as ServerConfig).limits;
const limits = (overrides: Partial<RequestLimits>): RequestLimits => ({ ...DEFAULTS, ...overrides });
const golden = readModelJson<{ cases: GoldenCase[] }>("golden.json").cases[0] as GoldenCase;
const INPUT_VALUES = golden.input.length; // 784 for the shipped 28 x 28 model

describe("weighing a ClassifyRequest before decoding it", () => {
  it("agrees with the decoder on any request protobufjs writes", () => {
    const classify = loadProtocol().ctmService.Classify as grpc.MethodDefinition<ClassifyRequestMessage, unknown>;
    const request = fc.record(
      {
        model: fc.string({ maxLength: 40 }),
        version: fc.nat(),
        input: fc.oneof(
          fc.uint8Array({ maxLength: 3000 }).map((data) => ({ image: { data } })),
          fc
            .record({ shape: fc.array(fc.nat(), { maxLength: 6 }), values: fc.array(fc.float(), { maxLength: 3000 }) })
            .map((tensor) => ({ tensor })),
        ),
        halt_policy: fc.record({ certainty_threshold: fc.double(), max_ticks: fc.nat() }, { requiredKeys: [] }),
        top_k: fc.nat(),
      },
      { requiredKeys: ["input"] },
    );
    fc.assert(
      fc.property(request, ({ input, ...rest }) => {
        const body = classify.requestSerialize({ ...rest, ...input });
        const weight = weighClassifyRequest(body);
        assert.equal(weight.imageBytes, "image" in input ? input.image.data.length : 0);
        assert.equal(weight.tensorValues, "tensor" in input ? input.tensor.values.length : 0);
      }),
      { numRuns: 300 },
    );
  });

  it("reads the image length and the tensor's value count, packed or not, from the framing", () => {
    assert.deepEqual(weighClassifyRequest(classifyRequestBytes("m", { image: Buffer.alloc(1000) })), {
      imageBytes: 1000,
      tensorValues: 0,
      shapeEntries: 0,
    });
    assert.deepEqual(weighClassifyRequest(classifyRequestBytes("m", { shape: [1, 28, 28], values: 784 })), {
      imageBytes: 0,
      tensorValues: 784,
      shapeEntries: 3,
    });
    // Unpacked: one fixed32 field (tag 0x15) per value.
    const unpacked = Buffer.concat(Array.from({ length: 5 }, () => Buffer.from([0x15, 0, 0, 0, 0])));
    const body = Buffer.concat([Buffer.from([0x22, unpacked.length]), unpacked]);
    assert.deepEqual(weighClassifyRequest(body), { imageBytes: 0, tensorValues: 5, shapeEntries: 0 });
    // Malformed framing is left to the decoder: nothing is counted past it.
    assert.deepEqual(weighClassifyRequest(Buffer.from([0x22, 0xff, 0xff, 0xff, 0xff, 0x0f])), {
      imageBytes: 0,
      tensorValues: 0,
      shapeEntries: 0,
    });
  });
});

describe("request size limits", () => {
  let t: TestServer;
  let sample: Sample;
  before(async () => {
    // A message limit larger than the derived one, so that the image and tensor limits are what refuse.
    t = await startTestServer({ limits: limits({ maxMessageBytes: 32 * 1024 * 1024, maxImageBytes: 256 * 1024 }) });
    sample = samples()[0] as Sample;
  });
  after(() => t.close());

  it("derives the message limit from the shipped model: --max-image-bytes plus room for the other fields", async () => {
    const derived = await startTestServer();
    try {
      const listening = derived.logs.find((line) => line.msg === "gRPC listening; loading models");
      assert.equal(listening?.maxMessageBytes, DEFAULTS.maxImageBytes + OTHER_FIELDS_BYTES);
      assert.equal(listening?.maxTensorValues, INPUT_VALUES);
      const big = Buffer.concat([sample.png, Buffer.alloc(DEFAULTS.maxImageBytes + OTHER_FIELDS_BYTES, 0)]);
      const error = await failure(derived.client.classify({ model: MODEL_NAME, image: { data: big } }));
      assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
      // Named the flag to raise: grpc-js's own "Received message larger than max (N vs M)" named none.
      assert.equal(
        error.details,
        `the request message is ${big.length + 21} bytes, beyond the ${DEFAULTS.maxImageBytes + OTHER_FIELDS_BYTES} this server reads (--max-image-bytes ${DEFAULTS.maxImageBytes} plus 64 KiB for the other fields; --max-message-bytes sets the limit directly): send a smaller image (npm run classify shrinks large ones before sending) or raise --max-image-bytes`,
      );
      const response = await derived.client.classify(tensorRequest(golden));
      assert.equal(response.top_k[0]?.index, golden.label);
    } finally {
      await derived.close();
    }
  });

  it("refuses a tensor with more values than the largest served input before decoding it, naming --max-tensor-values", async () => {
    // 4 million values: decoded, the transport would answer INVALID_ARGUMENT about the count; this
    // refusal comes from the framing alone.
    const error = await failure(
      t.client.classify({ model: MODEL_NAME, tensor: { shape: [4_000_000], values: new Array(4_000_000).fill(0) } }),
    );
    assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(
      error.details,
      `input.tensor.values has 4000000 values, beyond the ${INPUT_VALUES} this server accepts (--max-tensor-values; the largest input it serves)`,
    );
    const response = await t.client.classify(tensorRequest(golden));
    assert.equal(response.top_k[0]?.index, golden.label);
  });

  it("refuses an image beyond --max-image-bytes, naming it, and reads one at the limit", async () => {
    const limit = 256 * 1024;
    const over = Buffer.concat([sample.png, Buffer.alloc(limit + 1 - sample.png.length, 0)]);
    const error = await failure(t.client.classify({ model: MODEL_NAME, image: { data: over } }));
    assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(
      error.details,
      `input.image.data is ${limit + 1} bytes, beyond the ${limit} this server accepts (--max-image-bytes)`,
    );
    const at = Buffer.concat([sample.png, Buffer.alloc(limit - sample.png.length, 0)]);
    const response = await t.client.classify({ model: MODEL_NAME, image: { data: at } });
    assert.equal(response.top_k[0]?.index, sample.label);
  });

  // Quoted whole, the 1 MiB name makes the call hang rather than fail: the timeout makes that a failure.
  it("quotes a 1 MiB model name cut short, and refuses a 300,000-entry shape before decoding it", {
    timeout: 30_000,
  }, async () => {
    const name = "m".repeat(1024 * 1024);
    const unknown = await failure(t.client.classify({ model: name, tensor: { shape: [1], values: [0] } }));
    assert.equal(unknown.code, grpc.status.NOT_FOUND);
    assert.ok(unknown.details.length < 512, `details of ${unknown.details.length} characters`);
    assert.match(
      unknown.details,
      /^model "m{128}"\.\.\. \(1048576 characters\) is not loaded \(loaded: mnist-ctm\/1\)$/,
    );
    // A request that carries no input is refused from its length prefix beyond 64 KiB; under it, the
    // unknown name is quoted cut short as above.
    const oversized = await failure(t.client.getModel(name));
    assert.equal(oversized.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(
      oversized.details,
      "the request message is 1048582 bytes, beyond the 65536 a request that carries no input may have",
    );
    const described = await failure(t.client.getModel("m".repeat(60_000)));
    assert.equal(described.code, grpc.status.NOT_FOUND);
    assert.ok(described.details.length < 512, `details of ${described.details.length} characters`);

    // Refused from its framing: decoding the shape cost the event loop ~100 ms, only to refuse it after.
    const shape = new Array(300_000).fill(1);
    const badShape = await failure(t.client.classify({ model: MODEL_NAME, tensor: { shape, values: golden.input } }));
    assert.equal(badShape.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(
      badShape.details,
      "input.tensor.shape has 300000 entries, more than the 3 of any served model's input; refused before decoding",
    );
    // A shape of a possible rank that does not match is decoded, and quoted (cut short when long).
    const wrong = await failure(
      t.client.classify({ model: MODEL_NAME, tensor: { shape: [1, 784, 1], values: golden.input } }),
    );
    assert.equal(wrong.code, grpc.status.INVALID_ARGUMENT);
    assert.ok(wrong.details.length <= MAX_DETAILS_CHARS, `details of ${wrong.details.length} characters`);
    assert.match(wrong.details, /got \[1, 784, 1\]$/);
  });

  it("labels metrics of unknown models (unknown), not with the name a client made up", async () => {
    await failure(t.client.classify({ model: "made-up-model-name", tensor: { shape: [1], values: [0] } }));
    const text = await t.metrics();
    assert.ok(!text.includes("made-up-model-name"), "the made-up name is not a label");
    assert.ok(metricValue(text, "ctm_requests_total", { model: "(unknown)" }) >= 1);
  });
});

describe("--max-inflight-bytes", () => {
  let t: TestServer;
  let sample: Sample;
  const padded = 600 * 1024;
  before(async () => {
    // Room for one padded request at a time, not two.
    t = await startTestServer({ limits: limits({ maxInflightBytes: 1024 * 1024 }) });
    sample = samples()[0] as Sample;
  });
  after(() => t.close());

  it("refuses what would pass the bound at once, naming it, and gives the bytes back when calls end", async () => {
    const data = Buffer.concat([sample.png, Buffer.alloc(padded - sample.png.length, 0)]);
    // Each runs every tick, so that calls overlap while their messages are held.
    const request = { model: MODEL_NAME, image: { data }, halt_policy: { certainty_threshold: 1 } };
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => t.client.classify(request)));
    const refused = results.flatMap((r) => (r.status === "rejected" ? [r.reason as grpc.ServiceError] : []));
    const answered = results.filter((r) => r.status === "fulfilled");
    assert.ok(answered.length >= 1, "at least one call was served");
    assert.ok(refused.length >= 1, "at least one call was refused");
    for (const error of refused) {
      assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(
        error.details,
        /^the server holds \d+ bytes of requests in progress; this \d+-byte request would pass the 1048576 it allows \(--max-inflight-bytes\); retry shortly$/,
      );
    }
    // Every byte was given back: one at a time, each is served.
    for (let i = 0; i < 3; i++) {
      const response = await t.client.classify(request);
      assert.equal(response.top_k[0]?.index, sample.label);
    }
  });
});
