/**
 * Graceful shutdown, seen by streaming clients: streams in flight when the drain starts get every tick
 * and their final message with an OK status, new calls are refused with UNAVAILABLE and health
 * (the server's and each model's) reads NOT_SERVING meanwhile; streams still running when the grace
 * period ends are cut with UNAVAILABLE naming it. health.test.ts covers the same for unary calls.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import * as grpc from "@grpc/grpc-js";
import {
  type CtmTestClient,
  failure,
  type GoldenCase,
  MODEL_NAME,
  metricValue,
  readModelJson,
  startTestServer,
  tensorRequest,
} from "../../../tools/harness/testServer.ts";
import type { ClassifyRequestMessage, TickUpdateMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { modelHealthService } from "../../src/transport/health/modelHealth.ts";
import { checkHealth, healthClient } from "../support/healthClient.ts";

const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
/** Every request runs all the model's ticks, so a stream's length is known. */
const fullRequest = (i: number): ClassifyRequestMessage =>
  tensorRequest(golden.cases[i % golden.cases.length] as GoldenCase, {
    min_ticks: golden.ticks,
    max_ticks: golden.ticks,
  });

interface WatchedStream {
  messages: TickUpdateMessage[];
  /** The call's final status: code and details. */
  status: Promise<{ code: grpc.status; details: string }>;
  started: Promise<void>;
}

function watchStream(client: CtmTestClient, request: ClassifyRequestMessage): WatchedStream {
  const stream = client.stream(request);
  const messages: TickUpdateMessage[] = [];
  const started = new Promise<void>((resolve) => stream.once("data", () => resolve()));
  stream.on("data", (message: TickUpdateMessage) => messages.push(message));
  const status = new Promise<{ code: grpc.status; details: string }>((resolve) => {
    // 'status' comes for every call, OK or not; 'error' must be listened to or it throws.
    stream.on("error", () => {});
    stream.on("status", ({ code, details }: grpc.StatusObject) => resolve({ code, details }));
  });
  return { messages, status, started };
}

const ticksOf = (messages: TickUpdateMessage[]) => messages.map((m) => m.tick);
const oneToN = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe("graceful shutdown of streams", () => {
  it("lets in-flight streams finish every tick with OK, refuses new calls and reads NOT_SERVING meanwhile", async () => {
    const t = await startTestServer({ graceMs: 30_000 });
    const health = healthClient(t.address);
    const streams = Array.from({ length: 24 }, (_, i) => watchStream(t.client, fullRequest(i)));
    await Promise.all(streams.map((s) => s.started));

    const stopped = t.server.shutdown();
    // The engines stop admitting as shutdown() is called; the streams above still have ticks to go.
    const [refusedStream, refusedUnary, serverHealth, modelHealth] = await Promise.all([
      watchStream(t.client, fullRequest(0)).status,
      failure(t.client.classify(fullRequest(0))),
      checkHealth(health, ""),
      checkHealth(health, modelHealthService(MODEL_NAME)),
    ]);
    for (const refused of [refusedStream, refusedUnary]) {
      assert.equal(refused.code, grpc.status.UNAVAILABLE);
      assert.equal(refused.details, "the server is shutting down and accepts no new requests");
    }
    assert.equal(serverHealth, "NOT_SERVING");
    assert.equal(modelHealth, "NOT_SERVING");

    for (const [i, stream] of streams.entries()) {
      assert.deepEqual(await stream.status, { code: grpc.status.OK, details: "OK" }, `stream ${i}`);
      assert.deepEqual(ticksOf(stream.messages), oneToN(golden.ticks), `stream ${i} got every tick`);
      const last = stream.messages.at(-1);
      assert.ok(last?.final && last.result, `stream ${i} ends with its final message`);
      assert.equal(last.result.ticks_used, golden.ticks);
      assert.equal(stream.messages.filter((m) => m.final).length, 1);
    }
    await stopped;
    // Stopped means stopped: nothing listens any more.
    const after = await failure(t.client.classify(fullRequest(0), { deadline: Date.now() + 2000 }));
    assert.ok([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED].includes(after.code), after.details);
    health.close();
    t.client.close();
  });

  it("cuts streams still running when the grace period ends with UNAVAILABLE naming it", async () => {
    // Small batches and many streams: the drain cannot finish them all within the grace period.
    const graceMs = 200;
    const t = await startTestServer({ maxBatch: 4, graceMs });
    const streams = Array.from({ length: 96 }, (_, i) => watchStream(t.client, fullRequest(i)));
    // Every stream admitted (running, queued or done) before the drain starts, as the server's gauges say.
    let finished = 0;
    for (const s of streams) void s.status.then(() => finished++);
    for (let polls = 0; polls < 1000; polls++) {
      const text = await t.metrics();
      const held = metricValue(text, "ctm_queue_depth") + metricValue(text, "ctm_active_requests");
      if (held + finished >= streams.length) break;
      await sleep(10);
    }
    await t.server.shutdown();

    let completed = 0;
    let cut = 0;
    for (const [i, stream] of streams.entries()) {
      const status = await stream.status;
      const ticks = ticksOf(stream.messages);
      if (status.code === grpc.status.OK) {
        completed++;
        assert.deepEqual(ticks, oneToN(golden.ticks), `stream ${i} completed with every tick`);
        assert.ok(stream.messages.at(-1)?.final);
        continue;
      }
      cut++;
      assert.equal(status.code, grpc.status.UNAVAILABLE, `stream ${i}: ${status.details}`);
      assert.equal(
        status.details,
        `the server shut down before this request finished (grace period ${graceMs} ms)`,
        `stream ${i}`,
      );
      // Cut between ticks: the ticks it had, in order, and no final message.
      assert.deepEqual(ticks, oneToN(ticks.length), `stream ${i}`);
      assert.ok(ticks.length < golden.ticks && !stream.messages.some((m) => m.final), `stream ${i}`);
    }
    assert.equal(completed + cut, streams.length);
    assert.ok(cut > 0, "some streams were still running when the grace period ended");
    const warned = t.logs.find((line) => line.msg === "grace period over; cancelling in-flight requests");
    assert.equal(warned?.cancelled, cut);
    assert.equal(warned?.graceMs, graceMs);
    t.client.close();
  });
});
