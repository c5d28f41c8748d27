/**
 * Shutdown edges of the in-process API (startServer): whatever is in flight when shutdown() is called,
 * every request settles, and once shutdown() has resolved no thread of ours is left running.
 *
 * - A request still decoding its image when the drain's grace period ends is not answered late, nor
 *   left queued on an engine with no workers: it fails with the grace-period UNAVAILABLE.
 * - A replacement worker that comes up after shutdown started is stopped, not added to the workers.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { describe, it } from "node:test";
import type { Worker } from "node:worker_threads";
import * as grpc from "@grpc/grpc-js";
import { digitPhoto } from "../../../tools/harness/index.ts";
import {
  failure,
  MODEL_NAME,
  type Sample,
  samples,
  startTestServer,
  type TestServer,
  testConfig,
} from "../../../tools/harness/testServer.ts";

interface EnginePrivates {
  workers: { worker: Worker }[];
  preparing: number;
}
const engineOf = (t: TestServer) => t.server.registry.get(MODEL_NAME, 0) as unknown as EnginePrivates;
/** Threads of this process (Linux): the event loop's, libuv's and V8's, and every worker's with its onnxruntime threads. */
const threads = () => readdirSync("/proc/self/task").length;

/** The 2000x2000 photo is 3.4 MB, beyond the derived default --max-image-bytes (1 MiB). */
const PHOTO_LIMITS = { limits: { ...testConfig().limits, maxImageBytes: 8 << 20 } };

async function bigPhoto(): Promise<{ photo: Buffer; label: number }> {
  const sample = samples()[0] as Sample;
  const photo = await digitPhoto(sample.png, {
    size: 1500,
    canvas: { width: 2000, height: 2000 },
    offset: { x: 200, y: 200 },
    format: "png",
  });
  return { photo, label: sample.label };
}

describe("shutdown with work in flight", () => {
  it("fails a request still decoding its image when the grace period ends, instead of answering it", async () => {
    const { photo } = await bigPhoto();
    const t = await startTestServer(PHOTO_LIMITS);
    let settled = false;
    const call = failure(t.client.classify({ model: MODEL_NAME, image: { data: photo } })).finally(() => {
      settled = true;
    });
    // Bounded by the call itself: one refused before its decoding started would otherwise spin here.
    while (engineOf(t).preparing === 0 && !settled) await new Promise((resolve) => setImmediate(resolve));
    assert.ok(!settled, "the photo was answered before its decoding was seen");
    await t.server.shutdown(0);
    const error = await call;
    assert.equal(error.code, grpc.status.UNAVAILABLE, error.details);
    assert.equal(error.details, "the server shut down before this request finished (grace period 0 ms)");
    t.client.close();
  });

  it("leaves no thread behind, even when a replacement worker was starting", async () => {
    // A first server warms up the process's own pools (libuv, libvips), so that what is left after
    // the second is ours or nothing.
    const { photo, label } = await bigPhoto();
    const warm = await startTestServer(PHOTO_LIMITS);
    assert.equal((await warm.client.classify({ model: MODEL_NAME, image: { data: photo } })).top_k[0]?.index, label);
    await warm.close();
    const baseline = threads();

    const t = await startTestServer();
    const worker = engineOf(t).workers[0]?.worker as Worker;
    const died = new Promise((resolve) => worker.once("exit", resolve));
    worker.postMessage({ type: "credit", credits: 0 });
    await died;
    // The replacement is starting now (it takes a while to open its sessions).
    assert.ok(t.logs.some((line) => line.msg === "scheduler worker exited; restarting it"));
    await t.close();
    assert.equal(engineOf(t).workers.length, 0, "no worker is left after shutdown");
    // Worker threads are reaped asynchronously after they exit; give them a moment, bounded.
    let left = threads();
    for (let polls = 0; polls < 200 && left > baseline; polls++) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      left = threads();
    }
    assert.ok(left <= baseline, `${left - baseline} thread(s) left after shutdown`);
    assert.equal(engineOf(t).workers.length, 0, "and none joined later");
  });
});
