/**
 * Clients that stop reading their streams. A stream whose client takes no more messages backs up
 * (HTTP/2 flow control, then grpc-js's write buffer); its request is then parked: it costs no compute
 * and holds no batch slot, so everyone else is still served. After --stream-write-idle-ms without a
 * message taken, the stream ends with DEADLINE_EXCEEDED saying why, and its request is gone.
 *
 * The model is a copy of the shipped one allowed 40 ticks (`ticks.max: 40`, a manifest change only:
 * the tick graph runs any number of ticks), so that a stream has more messages than grpc-js buffers.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { StalledClient } from "../../../tools/harness/index.ts";
import {
  type GoldenCase,
  metricValue,
  readModelJson,
  startTestServer,
  type TestServer,
  tensorRequest,
} from "../../../tools/harness/testServer.ts";
import type { ClassifyRequestMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { loadProtocol } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { longModelDir } from "../support/modelRepository.ts";

const NAME = "mnist-long";
const TICKS = 40;
const MAX_BATCH = 4;
const IDLE_MS = 3000;

const golden = readModelJson<{ cases: GoldenCase[] }>("golden.json");
const request = (i: number, ticks = TICKS): ClassifyRequestMessage => ({
  ...tensorRequest(golden.cases[i % golden.cases.length] as GoldenCase, { min_ticks: ticks, max_ticks: ticks }),
  model: NAME,
});

describe("streams whose clients stop reading", () => {
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

  const metric = async (name: string) => metricValue(await t.metrics(), name, { model: NAME });

  it("runs the model past its trained ticks", async () => {
    const messages = await t.client.collect(request(0));
    assert.deepEqual(
      messages.map((m) => m.tick),
      Array.from({ length: TICKS }, (_, i) => i + 1),
    );
    assert.equal(messages.at(-1)?.result?.ticks_used, TICKS);
  });

  it("parks them without holding batch slots, serves everyone else, and ends them after the write-idle limit", async () => {
    // 48 streams on one connection that never grants window: the server can send them 64 KiB in all,
    // about a quarter of what they would receive.
    const stalled = await StalledClient.connect("127.0.0.1", t.server.port);
    const serialize = loadProtocol().ctmService.ClassifyStream?.requestSerialize as (r: unknown) => Buffer;
    const STUCK = 48;
    for (let i = 0; i < STUCK; i++) stalled.call(t.address, "/ctm.v1.CtmService/ClassifyStream", serialize(request(i)));
    let parked = 0;
    for (let polls = 0; polls < 250 && parked < 2 * MAX_BATCH; polls++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      parked = await metric("ctm_parked_requests");
    }
    const active = await metric("ctm_active_requests");

    // More stuck streams than batch slots, and still every other call is served.
    const answers = await Promise.all(
      Array.from({ length: 2 * MAX_BATCH }, (_, i) =>
        t.client.classify(request(i, 15), { deadline: Date.now() + 20_000 }),
      ),
    );
    for (const answer of answers) assert.equal(answer.ticks_used, 15);
    // Because they are parked and hold no batch slot.
    assert.ok(parked >= 2 * MAX_BATCH, `${parked} streams parked`);
    assert.ok(active <= MAX_BATCH, `${active} requests held batch slots`);

    // The write-idle limit ends every stuck stream that had not finished, with DEADLINE_EXCEEDED, and
    // frees its request.
    const streams = async (status: string) =>
      metricValue(await t.metrics(), "ctm_requests_total", { model: NAME, method: "ClassifyStream", status });
    const settled = async () => (await streams("OK")) + (await streams("DEADLINE_EXCEEDED"));
    for (let polls = 0; polls < 1000 && (await settled()) < STUCK + 1; polls++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    // +1: the first test's stream, which read everything.
    assert.equal(await settled(), STUCK + 1);
    assert.ok((await streams("DEADLINE_EXCEEDED")) >= 2 * MAX_BATCH);
    assert.equal(await metric("ctm_parked_requests"), 0);
    assert.equal(await metric("ctm_active_requests"), 0);
    const cancelled = metricValue(await t.metrics(), "ctm_halts_total", { model: NAME, reason: "CANCELLED" });
    assert.equal(cancelled, await streams("DEADLINE_EXCEEDED"));
    // What the client is told (this client cannot decode it: the log carries the same text). A grpc-js
    // client cannot play the stuck reader: it keeps granting HTTP/2 window to a paused stream.
    const warned = t.logs.filter((line) => line.level === 40 && line.method === "ClassifyStream");
    assert.equal(warned.length, await streams("DEADLINE_EXCEEDED"));
    for (const line of warned) {
      assert.equal(
        line.msg,
        `the client took no message for ${IDLE_MS} ms (--stream-write-idle-ms); the stream was ended to free its place in the batch`,
      );
    }
    stalled.close();
  });
});
