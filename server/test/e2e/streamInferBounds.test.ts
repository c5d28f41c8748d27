/**
 * The Open Inference Protocol's ModelStreamInfer held to the same bounds as every other call. A
 * client that sends request after request down one stream and reads none of the answers used to have
 * every request started at once (2,836 requests, 1.36 GB, took RSS from 615 to 3,234 MiB in 14 s);
 * now the stream runs at most --max-batch requests, stops reading while its client takes nothing (so
 * HTTP/2 flow control holds the client back), and after --stream-write-idle-ms the whole call is
 * reset, with one log line. An id is bounded too: it comes back with every answer.
 *
 * The model is a copy of the shipped one allowed 40 ticks, so that each request has many answers.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createOipClient, eventually, grpcMessage, StalledClient } from "../../../tools/harness/index.ts";
import {
  type GoldenCase,
  metricValue,
  readModelJson,
  startTestServer,
  type TestServer,
} from "../../../tools/harness/testServer.ts";
import { MAX_ID_CHARS } from "../../src/transport/oip/inferDecoding.ts";
import {
  loadInferenceProtocol,
  type ModelInferRequestMessage,
  type ModelStreamInferResponseMessage,
} from "../../src/transport/oip/oipProtocol.ts";
import { longModelDir } from "../support/modelRepository.ts";

const NAME = "mnist-long";
const TICKS = 40;
const MAX_BATCH = 4;
const IDLE_MS = 1500;
const SENT = 200;

const golden = readModelJson<{ cases: GoldenCase[] }>("golden.json").cases[0] as GoldenCase;

function inferRequest(id: string): ModelInferRequestMessage {
  return {
    model_name: NAME,
    id,
    parameters: { min_ticks: { int64_param: TICKS }, max_ticks: { int64_param: TICKS } },
    inputs: [{ name: "input", datatype: "FP32", shape: [1, ...golden.input_shape] }],
    raw_input_contents: [Buffer.from(new Float32Array(golden.input).buffer)],
  };
}

describe("ModelStreamInfer under a client that does not read", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({
      modelsDir: longModelDir(NAME, TICKS),
      maxBatch: MAX_BATCH,
      maxQueue: 64,
      streamWriteIdleMs: IDLE_MS,
    });
  });
  after(() => t.close());

  const streamed = async () =>
    metricValue(await t.metrics(), "ctm_requests_total", { model: NAME, method: "ModelStreamInfer" });

  it("reads no further than its bound, and after the write-idle limit resets the whole call", async () => {
    const serialize = loadInferenceProtocol().inferenceService.ModelStreamInfer?.requestSerialize as (
      r: unknown,
    ) => Buffer;
    const client = await StalledClient.connect("127.0.0.1", t.server.port);
    try {
      const stream = client.open(t.address, "/inference.GRPCInferenceService/ModelStreamInfer");
      for (let i = 0; i < SENT; i++) client.send(stream, grpcMessage(serialize(inferRequest(`r${i}`))));
      const reset = await eventually(() => client.resets.has(stream), IDLE_MS + 8000);
      // Before the fix no stream was ever reset: its requests each waited out the limit alone.
      assert.ok(reset, "the stream was never reset");
      assert.equal(client.resets.get(stream), 8, "RST_STREAM CANCEL");
      // The server stopped reading: most of what the client wanted to send never left it.
      assert.ok(client.unsent(stream) > 0, "the server read every request");
      await eventually(() => false, 300);
      const handled = await streamed();
      assert.ok(handled < SENT / 4, `${handled} of ${SENT} requests were started`);
      // One line for the call, not one per request.
      const warned = t.logs.filter((line) => line.level === 40 && line.method === "ModelStreamInfer");
      assert.equal(warned.length, 1, JSON.stringify(warned));
      assert.match(
        warned[0]?.msg ?? "",
        new RegExp(
          `^the client took no message for ${IDLE_MS} ms \\(--stream-write-idle-ms\\).*request\\(s\\) are cancelled$`,
        ),
      );
      // Nothing of it is left in the engine.
      const metrics = await t.metrics();
      assert.equal(metricValue(metrics, "ctm_parked_requests", { model: NAME }), 0);
      assert.equal(metricValue(metrics, "ctm_active_requests", { model: NAME }), 0);
    } finally {
      client.close();
    }
  });

  it("refuses an id longer than it echoes, without echoing it", async () => {
    const client = createOipClient(t.address);
    try {
      async function* oneRequest() {
        yield inferRequest("i".repeat(500_000));
      }
      const answers: ModelStreamInferResponseMessage[] = [];
      for await (const answer of client.ModelStreamInfer(oneRequest())) answers.push(answer);
      assert.equal(answers.length, 1);
      const [answer] = answers as [ModelStreamInferResponseMessage];
      assert.equal(
        answer.error_message,
        `id "${"i".repeat(128)}"... (500000 characters) is longer than the ${MAX_ID_CHARS} characters an id may have (it is sent back with every response)`,
      );
      assert.equal(answer.infer_response?.id, "");
      assert.equal(answer.infer_response?.parameters.error_code?.string_param, "INVALID_ARGUMENT");
    } finally {
      client.close();
    }
  });
});
