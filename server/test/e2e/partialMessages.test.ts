/**
 * Request messages that never finish arriving. grpc-js holds a message's parts until its last byte,
 * with no time limit and outside the in-flight bound; the server now counts those bytes against
 * --max-inflight-bytes as they arrive and ends a call whose request does not arrive within
 * --receive-timeout-ms (requestArrival.ts). A message declared beyond the message limit is refused
 * from its length prefix, naming the flag to raise.
 */
import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { grpcEnding } from "../../../tools/harness/index.ts";
import {
  type GoldenCase,
  metricValue,
  readModelJson,
  startTestServer,
  type TestServer,
  tensorRequest,
  testConfig,
} from "../../../tools/harness/testServer.ts";
import { OTHER_FIELDS_BYTES } from "../../src/transport/grpc/requestSize.ts";

const golden = readModelJson<{ cases: GoldenCase[] }>("golden.json").cases[0] as GoldenCase;
const CLASSIFY = "/ctm.v1.CtmService/Classify";
const STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer";
const TIMEOUT_MS = 800;

interface Ended {
  status: number;
  details: string;
  /** RST_STREAM code the server sent, 0 if none. */
  reset: number;
}

/**
 * Opens a call on `session` and sends one message's 5-byte prefix declaring `declared` bytes, then
 * `send` bytes of it, and never anything more (no end of stream unless `end`). Gives up after 8 s,
 * with status -1, so that a server that never ends the call fails the test rather than hangs it.
 */
function partialCall(
  session: http2.ClientHttp2Session,
  path: string,
  declared: number,
  send: number,
  end = false,
): Promise<Ended> {
  return new Promise((resolve) => {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    const prefix = Buffer.alloc(5);
    prefix.writeUInt32BE(declared, 1);
    stream.write(Buffer.concat([prefix, Buffer.alloc(send)]));
    if (end) stream.end();
    const ended = grpcEnding(stream);
    const limit = setTimeout(() => stream.close(), 8000);
    stream.on("close", () => {
      clearTimeout(limit);
      resolve({ status: ended.status, details: ended.details, reset: stream.rstCode ?? 0 });
    });
  });
}

describe("request messages that never finish arriving", () => {
  let t: TestServer;
  let session: http2.ClientHttp2Session;
  before(async () => {
    t = await startTestServer({
      receiveTimeoutMs: TIMEOUT_MS,
      limits: { ...testConfig().limits, maxInflightBytes: 2_000_000 },
    });
    session = http2.connect(`http://${t.address}`);
    session.on("error", () => {});
  });
  after(async () => {
    session.close();
    await t.close();
  });

  it("ends a call whose message stops arriving, after --receive-timeout-ms, and lets its bytes go", async () => {
    const ended = await partialCall(session, CLASSIFY, 1_000_000, 600_000);
    assert.equal(ended.status, grpc.status.DEADLINE_EXCEEDED);
    assert.equal(
      ended.details,
      `the request message (600005 of 1000005 bytes came) did not arrive within ${TIMEOUT_MS} ms (--receive-timeout-ms); the call was ended`,
    );
    // A stream of ModelStreamInfer is timed per message, from the message's first byte.
    const streamed = await partialCall(session, STREAM_INFER, 300_000, 1000);
    assert.equal(streamed.status, grpc.status.DEADLINE_EXCEEDED);
    assert.match(streamed.details, /^the request message \(1005 of 300005 bytes came\) did not arrive within/);
    // A unary call that sends its whole message but never ends its stream is ended too.
    const unended = await partialCall(session, CLASSIFY, 10, 10);
    assert.equal(unended.status, grpc.status.DEADLINE_EXCEEDED);
    assert.match(unended.details, /^the request \(its message and the end of its stream\) did not arrive within/);
    const response = await t.client.classify(tensorRequest(golden));
    assert.equal(response.top_k[0]?.index, golden.label);
  });

  it("counts a message's bytes against --max-inflight-bytes as they arrive, before it is whole", async () => {
    // Two messages most of the way in hold 1.6 MB of the 2 MB bound between them ...
    const holding = [
      partialCall(session, CLASSIFY, 1_000_000, 800_000),
      partialCall(session, CLASSIFY, 1_000_000, 800_000),
    ];
    await new Promise((resolve) => setTimeout(resolve, 200));
    // ... so a third is refused as soon as its bytes would pass it, long before any of them is whole.
    const third = await partialCall(session, CLASSIFY, 1_000_000, 800_000);
    assert.equal(third.status, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(
      third.details,
      /^the server holds \d+ bytes of requests in progress; this \d+-byte request would pass the 2000000 it allows \(--max-inflight-bytes\); retry shortly$/,
    );
    for (const ended of await Promise.all(holding)) assert.equal(ended.status, grpc.status.DEADLINE_EXCEEDED);
    // Everything was given back: a whole request is served.
    const response = await t.client.classify(tensorRequest(golden));
    assert.equal(response.top_k[0]?.index, golden.label);
    assert.equal(metricValue(await t.metrics(), "ctm_requests_total", { method: "Classify", status: "OK" }) >= 2, true);
  });

  it("refuses a message whose length prefix is beyond the limit, naming the flag that raises it", async () => {
    // The default message limit: the default --max-image-bytes (8 MiB, a phone photo) plus the other fields.
    const limit = 8 * 1024 * 1024 + OTHER_FIELDS_BYTES;
    const ended = await partialCall(session, CLASSIFY, 9_000_000, 16_000);
    assert.equal(ended.status, grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(
      ended.details,
      `the request message is 9000000 bytes, beyond the ${limit} this server reads (--max-image-bytes 8388608 plus 64 KiB for the other fields; --max-message-bytes sets the limit directly): send a smaller image (npm run classify shrinks large ones before sending) or raise --max-image-bytes`,
    );
  });
});
