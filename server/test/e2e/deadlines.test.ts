/**
 * What halt_policy.deadline_ms means before the first tick: a request whose deadline passes while it
 * waits for a batch slot is not run at all; it gets DEADLINE_EXCEEDED, saying so, as soon as the
 * deadline passes, rather than one late tick's near-chance answer. (A deadline that passes after the
 * first tick halts with DEADLINE and the best answer so far: halting.test.ts.)
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  type GoldenCase,
  MODEL_NAME,
  metricValue,
  readModelJson,
  startTestServer,
  type TestServer,
  tensorRequest,
} from "../../../tools/harness/testServer.ts";
import type { ClassifyRequestMessage, TickUpdateMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";

const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
const full = (i: number): ClassifyRequestMessage =>
  tensorRequest(golden.cases[i % golden.cases.length] as GoldenCase, {
    min_ticks: golden.ticks,
    max_ticks: golden.ticks,
  });
const expired =
  /^halt_policy\.deadline_ms \(20 ms\) passed before the request's first tick \(it waited for a batch slot\); no tick was run$/;

describe("halt_policy.deadline_ms before the first tick", () => {
  let t: TestServer;
  before(async () => {
    // One batch slot: everything after the first request queues.
    t = await startTestServer({ maxBatch: 1 });
  });
  after(() => t.close());

  it("fails a request whose deadline passes in the queue with DEADLINE_EXCEEDED, unary and streamed, without a tick", async () => {
    // Dozens of full runs ahead of it: hundreds of tick runs, far more than 20 ms anywhere.
    const blockers = Array.from({ length: 32 }, (_, i) => t.client.classify(full(i)));
    for (let polls = 0; polls < 1000; polls++) {
      if (metricValue(await t.metrics(), "ctm_queue_depth") >= 16) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const late = { ...(golden.cases[0] as GoldenCase) };
    const policy = { deadline_ms: 20 };
    const unary = t.client.classify(tensorRequest(late, policy)).then(
      () => undefined,
      (error: grpc.ServiceError) => error,
    );
    const messages: TickUpdateMessage[] = [];
    const streamed = new Promise<grpc.ServiceError | undefined>((resolve) => {
      const stream = t.client.stream(tensorRequest(late, policy));
      stream.on("data", (m: TickUpdateMessage) => messages.push(m));
      stream.on("error", resolve);
      stream.on("end", () => resolve(undefined));
    });
    const [unaryError, streamError] = await Promise.all([unary, streamed]);
    for (const error of [unaryError, streamError]) {
      assert.ok(error, "the late request was answered");
      assert.equal(error.code, grpc.status.DEADLINE_EXCEEDED, error.details);
      assert.match(error.details, expired);
    }
    assert.deepEqual(messages, [], "no tick was streamed");
    // Failed when its deadline passed, not when a slot came free: the blockers are still running.
    const text = await t.metrics();
    assert.ok(metricValue(text, "ctm_queue_depth") > 0, "the queue ahead of it had not drained yet");
    assert.equal(metricValue(text, "ctm_halts_total", { model: MODEL_NAME, reason: "EXPIRED" }), 2);
    for (const answer of await Promise.all(blockers)) assert.equal(answer.ticks_used, golden.ticks);
  });

  it("holds a deadline_ms beyond Node's longest timer (2^31 - 1 ms) as far off, not as passed", async () => {
    // setTimeout fires such a delay after 1 ms: every queued request with one used to expire at once.
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on("warning", onWarning);
    try {
      const blockers = Array.from({ length: 8 }, (_, i) => t.client.classify(full(i)));
      for (let polls = 0; polls < 1000; polls++) {
        if (metricValue(await t.metrics(), "ctm_queue_depth") >= 4) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const far = [2 ** 31, 3_000_000_000, 4_294_967_295].flatMap((deadline_ms) =>
        [0, 1].map((i) => t.client.classify(tensorRequest(golden.cases[i] as GoldenCase, { deadline_ms }))),
      );
      for (const answer of await Promise.all(far)) assert.notEqual(answer.halt_reason, "HALT_REASON_DEADLINE");
      await Promise.all(blockers);
      assert.deepEqual(
        warnings.filter((w) => w.name === "TimeoutOverflowWarning").map((w) => w.message),
        [],
      );
    } finally {
      process.off("warning", onWarning);
    }
  });
});
