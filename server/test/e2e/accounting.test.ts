/**
 * Every request that ends is counted once, under its real status: the per-RPC counter
 * (ctm_requests_total, by gRPC status) and the engine's (ctm_halts_total, by how the request ended)
 * must add up, whatever ended it. The mix below ends requests in every way the engine knows: answered,
 * lost with a worker that died (and the rest served by its replacement), cancelled while its image was
 * still being decoded, expired in the queue (halt_policy.deadline_ms), and refused as invalid.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Worker } from "node:worker_threads";
import * as grpc from "@grpc/grpc-js";
import sharp from "sharp";
import { digitPhoto } from "../../../tools/harness/index.ts";
import {
  type GoldenCase,
  MODEL_NAME,
  metricValue,
  readModelJson,
  type Sample,
  samples,
  startTestServer,
  tensorRequest,
  testConfig,
} from "../../../tools/harness/testServer.ts";
import type { ClassifyRequestMessage, ClassifyResponseMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";

const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
const full = (i: number): ClassifyRequestMessage =>
  tensorRequest(golden.cases[i % golden.cases.length] as GoldenCase, {
    min_ticks: golden.ticks,
    max_ticks: golden.ticks,
  });

type Outcome = "OK" | keyof typeof grpc.status;

describe("request accounting", () => {
  it("counts every request once, and the two counters agree, whatever ended it", async () => {
    // The 2000x2000 photo below is 3.4 MB, beyond the derived default --max-image-bytes (1 MiB).
    const t = await startTestServer({
      maxBatch: 2,
      workers: 1,
      limits: { ...testConfig().limits, maxImageBytes: 8 << 20 },
    });
    const engine = () =>
      t.server.registry.get(MODEL_NAME, 0) as unknown as { workers: { worker: Worker }[]; preparing: number };
    const outcomes: Outcome[] = [];
    const track = (call: Promise<unknown>) =>
      call.then(
        () => outcomes.push("OK"),
        (error: grpc.ServiceError) => outcomes.push(grpc.status[error.code] as Outcome),
      );
    /** A unary call that can be cancelled. */
    const cancellable = (request: ClassifyRequestMessage) => {
      let call: grpc.ClientUnaryCall | undefined;
      const done = new Promise<ClassifyResponseMessage>((resolve, reject) => {
        call = (t.client.raw.Classify as (...a: unknown[]) => grpc.ClientUnaryCall).call(
          t.client.raw,
          request,
          {},
          (error: grpc.ServiceError | null, response: ClassifyResponseMessage) =>
            error ? reject(error) : resolve(response),
        );
      });
      return { call: call as grpc.ClientUnaryCall, done };
    };
    try {
      // Cancelled while the server decodes a large photo of a digit: three times, one after another.
      const sample = samples()[0] as Sample;
      const photo = await digitPhoto(sample.png, {
        size: 1500,
        canvas: { width: 2000, height: 2000 },
        offset: { x: 200, y: 200 },
        format: "png",
      });
      for (let i = 0; i < 3; i++) {
        const { call, done } = cancellable({ model: MODEL_NAME, image: { data: photo } });
        let settled = false;
        const tracked = track(done).finally(() => {
          settled = true;
        });
        // Bounded by the call itself: one refused before its decoding started would otherwise spin here.
        while (engine().preparing === 0 && !settled) await new Promise((resolve) => setImmediate(resolve));
        assert.ok(!settled, `the photo was answered before its decoding was seen: ${outcomes.at(-1)}`);
        call.cancel();
        await tracked;
        // The client knows at once; the server learns it when the decoding is done.
        while (engine().preparing > 0) await new Promise((resolve) => setTimeout(resolve, 5));
      }

      // A flood on two batch slots, so that most of it queues; a request whose deadline passes in the
      // queue; then the worker dies under it (its replacement serves what is still queued).
      const flood = Array.from({ length: 24 }, (_, i) => track(t.client.classify(full(i))));
      for (let polls = 0; polls < 1000; polls++) {
        if (metricValue(await t.metrics(), "ctm_queue_depth") >= 12) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const expired = track(
        t.client.classify(tensorRequest(golden.cases[0] as GoldenCase, { deadline_ms: 1, min_ticks: 1 })),
      );
      const worker = engine().workers[0]?.worker as Worker;
      const died = new Promise((resolve) => worker.once("exit", resolve));
      worker.postMessage({ type: "credit", credits: 0 });
      await died;
      // Refused: a blank image.
      const blank = await sharp({ create: { width: 32, height: 32, channels: 3, background: "#fff" } })
        .png()
        .toBuffer();
      const invalid = track(t.client.classify({ model: MODEL_NAME, image: { data: blank } }));
      await Promise.all([...flood, expired, invalid]);

      const count = (outcome: Outcome) => outcomes.filter((o) => o === outcome).length;
      assert.equal(count("CANCELLED"), 3);
      assert.ok(count("UNAVAILABLE") >= 1, `outcomes: ${outcomes}`);
      assert.equal(count("DEADLINE_EXCEEDED"), 1);
      assert.equal(count("INVALID_ARGUMENT"), 1);
      assert.equal(outcomes.length, 3 + 24 + 2);

      const text = await t.metrics();
      const requests = (status: string) =>
        metricValue(text, "ctm_requests_total", { model: MODEL_NAME, method: "Classify", status });
      const halts = (reason: string) => metricValue(text, "ctm_halts_total", { model: MODEL_NAME, reason });
      // The RPC counter says what the clients saw...
      for (const outcome of ["OK", "CANCELLED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "INVALID_ARGUMENT"] as const)
        assert.equal(requests(outcome), count(outcome), `ctm_requests_total{status="${outcome}"}`);
      assert.equal(metricValue(text, "ctm_requests_total", { model: MODEL_NAME }), outcomes.length);
      // ...and the engine's counter says the same, by how each request ended. A refused input never
      // reached the engine's queue and is counted only as INVALID_ARGUMENT.
      const answered = ["THRESHOLD", "PATIENCE", "MAX_TICKS", "DEADLINE"].reduce((sum, r) => sum + halts(r), 0);
      assert.equal(answered, count("OK"), "answered");
      assert.equal(halts("FAILED"), count("UNAVAILABLE"), "lost with the worker");
      assert.equal(halts("CANCELLED"), count("CANCELLED"), "cancelled, also while decoding");
      assert.equal(halts("EXPIRED"), count("DEADLINE_EXCEEDED"), "expired in the queue");
      assert.equal(metricValue(text, "ctm_halts_total", { model: MODEL_NAME }), outcomes.length - 1);
      assert.equal(metricValue(text, "ctm_ticks_used_count", { model: MODEL_NAME }), outcomes.length - 1);
    } finally {
      await t.close();
    }
  });
});
