/**
 * The Open Inference Protocol's health (ServerLive, ServerReady, ModelReady) agrees with
 * grpc.health.v1 in every state a server goes through: loading, serving, with a model that failed to
 * load (--on-model-error skip), and draining. (reflection.test.ts checks that reflection describes it.)
 * (Inference itself is driven by the real tritonclient: training/tests/test_open_inference_protocol.py.)
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { createOipClient } from "../../../tools/harness/index.ts";
import {
  type GoldenCase,
  MODEL_NAME,
  modelDir,
  REPO,
  readModelJson,
  startTestServer,
  tensorRequest,
} from "../../../tools/harness/testServer.ts";
import { CTM_SERVICE } from "../../src/transport/grpc/serviceNames.ts";
import { modelHealthService } from "../../src/transport/health/modelHealth.ts";
import { healthOf, type ServingStatus } from "../support/healthClient.ts";

const BROKEN = "mnist-broken";

/** The shipped model beside a copy of it whose tick graph is cut short, so that it fails to load. */
function modelsWithBrokenCopy(): string {
  const root = mkdtempSync(join(tmpdir(), "ctm-oip-"));
  symlinkSync(join(REPO, "models", MODEL_NAME), join(root, MODEL_NAME));
  const dir = join(root, BROKEN, "1");
  mkdirSync(dir, { recursive: true });
  for (const file of ["manifest.json", "encoder.onnx", "tick.onnx"])
    copyFileSync(join(modelDir(), file), join(dir, file));
  const manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as Record<string, unknown>;
  manifest.name = BROKEN;
  delete manifest.calibration;
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(manifest));
  const tick = readFileSync(join(dir, "tick.onnx"));
  writeFileSync(join(dir, "tick.onnx"), tick.subarray(0, Math.floor(tick.length / 3)));
  return root;
}

interface Snapshot {
  health: {
    server: ServingStatus;
    ctm: ServingStatus;
    good: ServingStatus | "NOT_FOUND";
    broken: ServingStatus | "NOT_FOUND";
  };
  v2: { live: boolean; ready: boolean; good: boolean; broken: boolean };
}

/** Both protocols' view of the server, each over a channel of its own. */
async function snapshot(address: string): Promise<Snapshot> {
  const perModel = (service: string) =>
    healthOf(address, [service]).then(
      ([status]) => status as ServingStatus,
      (error: grpc.ServiceError) => {
        assert.equal(error.code, grpc.status.NOT_FOUND);
        return "NOT_FOUND" as const;
      },
    );
  const [server, ctm] = await healthOf(address, ["", CTM_SERVICE]);
  const health = {
    server: server as ServingStatus,
    ctm: ctm as ServingStatus,
    good: await perModel(modelHealthService(MODEL_NAME)),
    broken: await perModel(modelHealthService(BROKEN)),
  };
  const client = createOipClient(address);
  try {
    const v2 = {
      live: (await client.ServerLive({})).live,
      ready: (await client.ServerReady({})).ready,
      good: (await client.ModelReady({ name: MODEL_NAME })).ready,
      broken: (await client.ModelReady({ name: BROKEN })).ready,
    };
    return { health, v2 };
  } finally {
    client.close();
  }
}

/** ready exactly when SERVING, per server and per model. */
function assertAgree({ health, v2 }: Snapshot, state: string): void {
  assert.equal(v2.live, true, `${state}: a server that answers is live`);
  assert.equal(v2.ready, health.server === "SERVING", `${state}: ServerReady vs health ""`);
  assert.equal(v2.ready, health.ctm === "SERVING", `${state}: ServerReady vs health ${CTM_SERVICE}`);
  assert.equal(v2.good, health.good === "SERVING", `${state}: ModelReady(${MODEL_NAME}) vs its health`);
  assert.equal(v2.broken, health.broken === "SERVING", `${state}: ModelReady(${BROKEN}) vs its health`);
}

describe("Open Inference Protocol health", () => {
  it("agrees with grpc.health.v1 while loading, serving with a failed model, and draining", async () => {
    let loading: Snapshot | undefined;
    const t = await startTestServer(
      { modelsDir: modelsWithBrokenCopy(), onModelError: "skip", graceMs: 60_000, maxBatch: 1 },
      {
        onListening: async (port) => {
          loading = await snapshot(`127.0.0.1:${port}`);
        },
      },
    );
    try {
      assert.ok(loading);
      assertAgree(loading, "loading");
      assert.deepEqual(loading.v2, { live: true, ready: false, good: false, broken: false });

      const serving = await snapshot(t.address);
      assertAgree(serving, "serving");
      assert.deepEqual(serving.v2, { live: true, ready: true, good: true, broken: false });
      assert.equal(serving.health.broken, "NOT_SERVING");
      const client = createOipClient(t.address);
      const refused = await client.ModelMetadata({ name: BROKEN }).then(
        () => undefined,
        (error: grpc.ServiceError) => error,
      );
      client.close();
      assert.equal(refused?.code, grpc.status.UNAVAILABLE);
      assert.match(
        refused?.details ?? "",
        /^model "mnist-broken" version 1 failed to load and is not serving: .*tick\.onnx/,
      );

      // Requests that run every tick, one at a time (--max-batch 1), keep the server draining while
      // both views are read; were it to stop first, the snapshot would fail, not pass.
      const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
      const request = tensorRequest(golden.cases[0] as GoldenCase, {
        min_ticks: golden.ticks,
        max_ticks: golden.ticks,
      });
      const calls = Array.from({ length: 200 }, () => t.client.classify(request));
      await Promise.race(calls);
      const stopped = t.server.shutdown();
      const draining = await snapshot(t.address);
      assertAgree(draining, "draining");
      assert.deepEqual(draining.v2, { live: true, ready: false, good: false, broken: false });
      await Promise.allSettled(calls);
      await stopped;
    } finally {
      await t.close();
    }
  });

  it("ModelReady is false for an unknown model and for a version that is not loaded", async () => {
    const t = await startTestServer();
    const client = createOipClient(t.address);
    try {
      const ready = (name: string, version = "") => client.ModelReady({ name, version }).then((r) => r.ready);
      assert.deepEqual(
        [
          await ready(MODEL_NAME),
          await ready(MODEL_NAME, "1"),
          await ready(MODEL_NAME, "2"),
          await ready("nope"),
          await ready(""),
        ],
        [true, true, false, false, false],
      );
    } finally {
      client.close();
      await t.close();
    }
  });
});
