/**
 * What one Open Inference Protocol ModelInfer call may cost the server. The rows of a call that is
 * refused give their queue places back at once and leave the decode line undecoded (images wait for
 * one of a few decode slots, runtime/decodeSlots.ts); a shape that no served model has is refused from
 * the request's framing, before a million int64s are decoded; a full batch of 64 rows prints no
 * listener-leak warning.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import sharp from "sharp";
import { createOipClient, type OipClient } from "../../../tools/harness/index.ts";
import {
  failure,
  type GoldenCase,
  MODEL_NAME,
  metricValue,
  readModelJson,
  startTestServer,
  type TestServer,
  testConfig,
} from "../../../tools/harness/testServer.ts";
import type { ModelInferRequestMessage, ModelInferResponseMessage } from "../../src/transport/oip/oipProtocol.ts";

const golden = readModelJson<{ cases: GoldenCase[] }>("golden.json").cases[0] as GoldenCase;

function modelInfer(client: OipClient, request: ModelInferRequestMessage): Promise<ModelInferResponseMessage> {
  return client.ModelInfer(request);
}

/** A 7000 x 7000 PNG (about 160 KB), white with a black rectangle: a second or two of decoding each. */
function largePng(): Promise<Buffer> {
  const side = 7000;
  return sharp({ create: { width: side, height: side, channels: 3, background: { r: 255, g: 255, b: 255 } } })
    .composite([
      {
        input: { create: { width: 800, height: 1200, channels: 3, background: { r: 0, g: 0, b: 0 } } },
        left: 1500,
        top: 1400,
      },
    ])
    .png({ compressionLevel: 9 })
    .toBuffer();
}

describe("ModelInfer rows and shapes", () => {
  let t: TestServer;
  let client: OipClient;
  before(async () => {
    // Four batch slots and no queue: four rows fill the model. One decode slot, and images up to 50 M
    // pixels (the default for these small models is 16.8 M), so that each row takes a while to decode.
    t = await startTestServer({
      maxBatch: 4,
      maxQueue: 0,
      limits: { ...testConfig().limits, maxImagePixels: 50_000_000 },
    });
    client = createOipClient(t.address);
  });
  after(async () => {
    client.close();
    await t.close();
  });

  it("drops a cancelled call's rows from the line: their images are not decoded and their places come back", async () => {
    const png = await largePng();
    const rows = 4;
    const decodes = async () => metricValue(await t.metrics(), "ctm_image_decodes_total");
    const before = await decodes();
    const cancelled = new AbortController();
    client
      .ModelInfer(
        {
          model_name: MODEL_NAME,
          inputs: [
            { name: "image", datatype: "BYTES", shape: [rows, 1], contents: { bytes_contents: Array(rows).fill(png) } },
          ],
        },
        { signal: cancelled.signal },
      )
      .catch(() => {});
    const probe = () =>
      modelInfer(client, {
        model_name: MODEL_NAME,
        inputs: [
          {
            name: "input",
            datatype: "FP32",
            shape: [1, ...golden.input_shape],
            contents: { fp32_contents: golden.input },
          },
        ],
      });
    // Its four rows hold the model's four places (four batch slots, no queue): one decoding, three
    // waiting for the one decode slot. (Asked after a moment, so that the probe does not come first.)
    for (let polls = 0; polls < 500 && metricValue(await t.metrics(), "ctm_image_decodes_waiting") < rows - 1; polls++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    const held = await failure(probe());
    assert.equal(held.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(held.details, /and 4 waiting \(max-queue 0\)/);
    cancelled.abort();
    // Every row is accounted for, as cancelled ...
    const halted = async () => metricValue(await t.metrics(), "ctm_halts_total", { reason: "CANCELLED" });
    for (let polls = 0; polls < 3000 && (await halted()) < rows; polls++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(await halted(), rows);
    // ... and only the image in the decode slot was decoded: the other three left the line undecoded
    // (they used to decode anyway, holding their places meanwhile).
    assert.equal((await decodes()) - before, 1);
    assert.equal(metricValue(await t.metrics(), "ctm_image_decodes_waiting"), 0);
    const answer = await probe();
    assert.ok(answer.outputs.some((o) => o.name === "probabilities"));
  });

  it("refuses a shape no served model has from the request's framing, before decoding it", async () => {
    const shape = new Array(1_000_000).fill(1);
    const refused = await failure(
      modelInfer(client, {
        model_name: MODEL_NAME,
        inputs: [{ name: "input", datatype: "FP32", shape, contents: { fp32_contents: golden.input } }],
      }),
    );
    assert.equal(refused.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(
      refused.details,
      "inputs[].shape has 1000000 entries, more than the 4 of any served model's input (the batch, then the input's 3 dimensions); refused before decoding",
    );
    // A million parameters or outputs are refused the same way.
    const parameters = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`p${i}`, { int64_param: i }]));
    const crowded = await failure(modelInfer(client, { model_name: MODEL_NAME, parameters }));
    assert.equal(
      crowded.details,
      "parameters has 100000 entries, more than the 16 this server reads; refused before decoding",
    );
  });

  it("runs a full batch of 64 rows, and 64 requests on one stream, without a listener-leak warning", async () => {
    await t.close();
    t = await startTestServer();
    client.close();
    client = createOipClient(t.address);
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on("warning", onWarning);
    try {
      const rows = 64;
      const response = await modelInfer(client, {
        model_name: MODEL_NAME,
        inputs: [
          {
            name: "input",
            datatype: "FP32",
            shape: [rows, ...golden.input_shape],
            contents: { fp32_contents: Array.from({ length: rows }, () => golden.input).flat() },
          },
        ],
      });
      assert.equal(response.outputs.find((o) => o.name === "probabilities")?.shape[0], rows);
      // And as many requests at once on one ModelStreamInfer, which share the call's signal.
      const requests = Array.from(
        { length: rows },
        (): ModelInferRequestMessage => ({
          model_name: MODEL_NAME,
          inputs: [
            {
              name: "input",
              datatype: "FP32",
              shape: [1, ...golden.input_shape],
              contents: { fp32_contents: golden.input },
            },
          ],
        }),
      );
      async function* all() {
        yield* requests;
      }
      for await (const _answer of client.ModelStreamInfer(all())) {
        // Read every answer to the end of the stream.
      }
      await new Promise((resolve) => setImmediate(resolve));
      // Before, the listeners on the call's shared AbortSignal passed Node's default of 10.
      assert.deepEqual(
        warnings.filter((w) => w.name === "MaxListenersExceededWarning").map((w) => w.message),
        [],
      );
    } finally {
      process.off("warning", onWarning);
    }
  });
});
