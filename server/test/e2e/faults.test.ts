/**
 * Faults: a model folder whose graph is corrupt or does not match its manifest stops the start with
 * the file and the problem named, or, with --on-model-error skip, is reported not ready while the
 * other models serve; a scheduler worker that dies fails its in-flight requests with UNAVAILABLE and
 * is replaced, and the model answers correctly again.
 *
 * Broken models are copies of the shipped one in a temporary models folder, with one file damaged.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Worker } from "node:worker_threads";
import * as grpc from "@grpc/grpc-js";
import {
  failure,
  type GoldenCase,
  MODEL_NAME,
  metricValue,
  modelDir,
  REPO,
  readModelJson,
  startTestServer,
  type TestServer,
  tensorRequest,
  testConfig,
} from "../../../tools/harness/testServer.ts";
import { createLogger } from "../../src/logger.ts";
import { startServer } from "../../src/server.ts";
import type { ClassifyRequestMessage, TickUpdateMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { modelHealthService } from "../../src/transport/health/modelHealth.ts";
import { healthOf } from "../support/healthClient.ts";

/** A models folder with the shipped model and a copy of it named `name`, damaged by `damage`. */
function modelsWithBrokenCopy(name: string, damage: (dir: string) => void, withGood = true): string {
  const root = mkdtempSync(join(tmpdir(), "ctm-faults-"));
  if (withGood) symlinkSync(join(REPO, "models", MODEL_NAME), join(root, MODEL_NAME));
  const dir = join(root, name, "1");
  mkdirSync(dir, { recursive: true });
  for (const file of ["manifest.json", "encoder.onnx", "tick.onnx", "calibration.json"]) {
    copyFileSync(join(modelDir(), file), join(dir, file));
  }
  editManifest(dir, (manifest) => {
    manifest.name = name;
  });
  damage(dir);
  return root;
}

function editManifest(dir: string, edit: (manifest: Record<string, unknown>) => void): void {
  const file = join(dir, "manifest.json");
  const manifest = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  edit(manifest);
  writeFileSync(file, JSON.stringify(manifest));
}

const truncate = (file: string) => (dir: string) => {
  const bytes = readFileSync(join(dir, file));
  writeFileSync(join(dir, file), bytes.subarray(0, Math.floor(bytes.length / 3)));
};
const garbage = (file: string) => (dir: string) => {
  // A fixed pattern, not random bytes: the same file, and the same message, every run.
  writeFileSync(join(dir, file), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131 + 7) % 256)));
};

function startFails(modelsDir: string): Promise<unknown> {
  return startServer(testConfig({ modelsDir, metrics: null }), { logger: createLogger("silent") }).then(
    async (server) => {
      await server.shutdown(0);
      throw new Error("the server started");
    },
    (error: unknown) => error,
  );
}

describe("a model graph that is corrupt or does not match its manifest", () => {
  it("stops the start, naming the file and the problem", async () => {
    const cases: [string, (dir: string) => void, RegExp][] = [
      [
        "truncated tick graph",
        truncate("tick.onnx"),
        /broken\/1\/tick\.onnx is not a valid ONNX model: Protobuf parsing failed/,
      ],
      ["garbage encoder graph", garbage("encoder.onnx"), /broken\/1\/encoder\.onnx is not a valid ONNX model: \S+/],
      [
        "another model's graph as the tick graph",
        (dir) => copyFileSync(join(dir, "encoder.onnx"), join(dir, "tick.onnx")),
        /broken\/1\/tick\.onnx does not match graphs\.tick in \S+broken\/1\/manifest\.json: the manifest lists input "k" but the graph's inputs are \[input\]/,
      ],
      [
        // The manifest promises 12 classes; the graph was exported with 10.
        "a graph with other widths than the manifest",
        (dir) =>
          editManifest(dir, (manifest) => {
            const output = manifest.output as { shape: number[]; labels: string[] };
            output.shape = [12];
            output.labels = [...output.labels, "10", "11"];
            const tick = (manifest.graphs as { tick: { outputs: { name: string; shape: unknown[] }[] } }).tick;
            for (const o of tick.outputs)
              if (o.name === "logits" || o.name === "probabilities") o.shape = ["batch", 12];
          }),
        /broken\/1\/tick\.onnx does not match graphs\.tick in \S+: output "logits" has shape \["batch", 10\] but the manifest says \["batch", 12\]; output "probabilities" has shape \["batch", 10\] but the manifest says \["batch", 12\]$/,
      ],
    ];
    for (const [label, damage, message] of cases) {
      const error = await startFails(modelsWithBrokenCopy("broken", damage));
      assert.ok(error instanceof Error, label);
      assert.match(error.message, message, label);
    }
  });
});

describe("--on-model-error skip", () => {
  const graphError = /mnist-broken\/1\/tick\.onnx is not a valid ONNX model: Protobuf parsing failed/;
  let t: TestServer;
  before(async () => {
    const modelsDir = modelsWithBrokenCopy("mnist-broken", truncate("tick.onnx"));
    // A second broken folder whose manifest does not even parse: it is named after its folder.
    mkdirSync(join(modelsDir, "no-manifest", "1"), { recursive: true });
    writeFileSync(join(modelsDir, "no-manifest", "1", "manifest.json"), "{ not json");
    t = await startTestServer({ modelsDir, onModelError: "skip" });
  });
  after(() => t.close());

  it("serves the other models; calls to the broken one get UNAVAILABLE with its load error", async () => {
    const golden = readModelJson<{ cases: GoldenCase[] }>("golden.json").cases[0] as GoldenCase;
    const refused = await failure(t.client.classify({ ...tensorRequest(golden), model: "mnist-broken" }));
    assert.equal(refused.code, grpc.status.UNAVAILABLE);
    assert.match(refused.details, /^model "mnist-broken" version 1 failed to load and is not serving: /);
    assert.match(refused.details, graphError);
    const streamed = await failure(t.client.collect({ ...tensorRequest(golden), model: "no-manifest" }));
    assert.equal(streamed.code, grpc.status.UNAVAILABLE);
    assert.match(streamed.details, /no-manifest\/1\/manifest\.json is not valid JSON/);
    const answer = await t.client.classify(tensorRequest(golden));
    assert.equal(answer.top_k[0]?.index, golden.label);
  });

  it("keeps health SERVING overall and reports each model's own health", async () => {
    assert.deepEqual(
      await healthOf(t.address, [
        "",
        "ctm.v1.CtmService",
        modelHealthService(MODEL_NAME),
        modelHealthService("mnist-broken"),
        modelHealthService("no-manifest"),
      ]),
      ["SERVING", "SERVING", "SERVING", "NOT_SERVING", "NOT_SERVING"],
    );
  });

  it("logs each broken model at error level, naming it", () => {
    const logged = t.logs.filter((line) => line.level === 50 && line.model === "mnist-broken");
    assert.equal(logged.length, 1);
    assert.match(
      logged[0]?.msg ?? "",
      /^model mnist-broken failed to load and is not served \(--on-model-error skip\): /,
    );
    assert.match(logged[0]?.msg ?? "", graphError);
    assert.ok(t.logs.some((line) => line.level === 50 && line.model === "no-manifest"));
    const serving = t.logs.find((line) => line.msg === "serving");
    assert.deepEqual([...((serving?.failed as string[] | undefined) ?? [])].sort(), ["mnist-broken", "no-manifest"]);
  });

  it("lists the broken models in ListModels and GetModel as MODEL_STATE_FAILED with the load error", async () => {
    const { models } = await t.client.listModels();
    assert.deepEqual(
      models.map((m) => [m.name, m.version, m.state]),
      // By name, loaded or not.
      [
        ["mnist-broken", 1, "MODEL_STATE_FAILED"],
        [MODEL_NAME, 1, "MODEL_STATE_READY"],
        ["no-manifest", 1, "MODEL_STATE_FAILED"],
      ],
    );
    const [broken, good, unparsed] = models as [(typeof models)[0], (typeof models)[0], (typeof models)[0]];
    assert.equal(good.load_error, "");
    assert.equal(good.provider, "cpu");
    assert.match(broken.load_error, graphError);
    // Its manifest parsed, so what it says is still shown; it runs on nothing.
    assert.equal(broken.labels.length, 10);
    assert.equal(broken.provider, "");
    assert.match(unparsed.load_error, /no-manifest\/1\/manifest\.json is not valid JSON/);
    assert.equal(unparsed.labels.length, 0);

    const described = await t.client.getModel("mnist-broken");
    assert.equal(described.state, "MODEL_STATE_FAILED");
    assert.match(described.load_error, graphError);
    assert.equal((await t.client.getModel(MODEL_NAME)).state, "MODEL_STATE_READY");
  });

  it("still refuses to start when no model loads", async () => {
    const modelsDir = modelsWithBrokenCopy("broken", truncate("tick.onnx"), false);
    await assert.rejects(
      startServer(testConfig({ modelsDir, metrics: null, onModelError: "skip" }), { logger: createLogger("silent") }),
      /^Error: no model in \S+ could be loaded: broken\/1: model broken: worker 0 could not start: \S+broken\/1\/tick\.onnx is not a valid ONNX model/,
    );
  });
});

describe("a scheduler worker that dies", () => {
  const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
  const full = (c: GoldenCase): ClassifyRequestMessage => ({
    ...tensorRequest(c, { min_ticks: golden.ticks, max_ticks: golden.ticks }),
    top_k: 10,
  });

  /** The engine's worker threads, reached through private fields: no test hooks in production code. */
  const workersOf = (t: Awaited<ReturnType<typeof startTestServer>>): Worker[] => {
    const engine = t.server.registry.get(MODEL_NAME, 0) as unknown as { workers: { worker: Worker }[] };
    return engine.workers.map((thread) => thread.worker);
  };

  const logitsDiffer = (ticks: TickUpdateMessage[], c: GoldenCase) =>
    Math.max(...ticks.flatMap((tick, i) => tick.logits.map((v, j) => Math.abs(v - (c.logits[i]?.[j] ?? Number.NaN)))));

  it("fails its in-flight requests with UNAVAILABLE, is replaced, and the model answers correctly again", async () => {
    const t = await startTestServer({ workers: 1 });
    try {
      const [killed] = workersOf(t);
      assert.ok(killed, "the engine has a worker");
      const cases = golden.cases.slice(0, 4);
      const outcome = (call: Promise<unknown>) =>
        call.then(
          () => "OK",
          (error: grpc.ServiceError) => error,
        );
      const unary = Array.from({ length: 24 }, (_, i) =>
        outcome(t.client.classify(full(cases[i % cases.length] as GoldenCase))),
      );
      const streams = Array.from({ length: 24 }, (_, i) => {
        const stream = t.client.stream(full(cases[i % cases.length] as GoldenCase));
        const ticks: number[] = [];
        const done = new Promise<grpc.ServiceError | "OK">((resolve) => {
          stream.on("data", (m: TickUpdateMessage) => ticks.push(m.tick));
          stream.on("error", resolve);
          stream.on("end", () => resolve("OK"));
        });
        return { stream, ticks, done };
      });
      // Mid-stream: as soon as the first tick of any request reaches its client.
      await new Promise<void>((resolve) => {
        for (const { stream } of streams) stream.once("data", () => resolve());
      });
      // Not Worker.terminate(): landing inside a graph run, it aborts the whole process (onnxruntime-node
      // 1.30 throws a C++ exception out of the interrupted run; docs/reliability.md, Faults). A message
      // the worker cannot handle kills it the way a bug would: an uncaught exception, between runs.
      const died = new Promise((resolve) => killed.once("exit", resolve));
      killed.postMessage({ type: "credit", credits: 0 });
      assert.equal(await died, 1);

      const results = [...(await Promise.all(unary)), ...(await Promise.all(streams.map((s) => s.done)))];
      const failed = results.filter((r): r is grpc.ServiceError => r !== "OK");
      assert.ok(failed.length > 0, "some requests were in flight when the worker died");
      for (const error of failed) {
        assert.equal(error.code, grpc.status.UNAVAILABLE, error.details);
        assert.match(
          error.details,
          /^model mnist-ctm: the inference worker running this request stopped \(exit code 1\); it has been restarted, retry the request$/,
        );
      }
      // A stream that failed did so mid-stream, after the ticks it had: never a gap, never a hang.
      for (const { ticks } of streams)
        assert.deepEqual(
          ticks,
          ticks.map((_, i) => i + 1),
        );
      assert.ok(streams.some((s) => s.ticks.length > 0 && s.ticks.length < golden.ticks));

      const exited = t.logs.find((line) => line.msg === "scheduler worker exited; restarting it");
      assert.equal(exited?.level, 50);
      assert.equal(exited?.lost, failed.length);

      // Asked before the replacement is up, these wait for it and are answered by it.
      const after = await Promise.all(cases.map((c) => t.client.collect(full(c))));
      const [replacement] = workersOf(t);
      assert.ok(replacement && replacement !== killed, "a new worker took the dead one's place");
      assert.equal(workersOf(t).length, 1);
      after.forEach((ticks, i) => {
        const c = cases[i] as GoldenCase;
        assert.equal(ticks.length, golden.ticks);
        assert.ok(logitsDiffer(ticks, c) <= 1e-4, `case ${i}: logits differ by ${logitsDiffer(ticks, c)}`);
        assert.equal(ticks.at(-1)?.result?.ticks_used, golden.ticks);
        assert.equal(ticks.at(-1)?.result?.top_k[0]?.index, c.label);
      });
    } finally {
      await t.close();
    }
  });
});

/** Kills an engine's worker the way a bug would (see "How a worker dies in the test", docs/reliability.md). */
async function killWorker(t: TestServer, model = MODEL_NAME): Promise<Worker> {
  const engine = t.server.registry.get(model, 0) as unknown as { workers: { worker: Worker }[] };
  const worker = engine.workers[0]?.worker;
  assert.ok(worker, `model ${model} has a worker to kill`);
  const died = new Promise((resolve) => worker.once("exit", resolve));
  worker.postMessage({ type: "credit", credits: 0 });
  assert.equal(await died, 1);
  return worker;
}

/** Polls `read` until `done` says yes (at most `timeoutMs`), returning the last value read. */
async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() - started > timeoutMs) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe("a scheduler worker that dies and cannot be restarted", () => {
  const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
  const c = golden.cases[0] as GoldenCase;
  const request = (model: string): ClassifyRequestMessage => ({
    ...tensorRequest(c, { min_ticks: golden.ticks, max_ticks: golden.ticks }),
    model,
  });
  const NAME = "mnist-fragile";
  const cause =
    /^model mnist-fragile is not serving: its inference worker 0 stopped \(exit code 1\) and could not be restarted: model mnist-fragile: worker 0 could not start: .*mnist-fragile\/1\/tick\.onnx.*; the server keeps retrying$/;

  it("fails queued and new requests at once with UNAVAILABLE naming the cause, reads NOT_SERVING and FAILED, and recovers by itself", async () => {
    // An intact copy of the model, whose graph then goes missing while it serves.
    const modelsDir = modelsWithBrokenCopy(NAME, () => {});
    const dir = join(modelsDir, NAME, "1");
    // One batch slot and a queue, so that requests are queued when the worker dies.
    const t = await startTestServer({ modelsDir, maxBatch: 1, workers: 1 });
    try {
      assert.equal((await t.client.classify(request(NAME))).top_k[0]?.index, c.label);
      renameSync(join(dir, "tick.onnx"), join(dir, "tick.onnx.away"));
      // In flight when the worker dies: one running, the rest queued. The deadline only keeps a request
      // that waits for a slot that never comes from hanging the test.
      const inFlight = Array.from({ length: 30 }, () =>
        t.client.classify(request(NAME), { deadline: Date.now() + 30_000 }).then(
          () => "OK" as const,
          (error: grpc.ServiceError) => error,
        ),
      );
      await until(
        () => t.metrics(),
        (text) => metricValue(text, "ctm_queue_depth", { model: NAME }) >= 10,
      );
      await killWorker(t, NAME);
      const outcomes = await Promise.all(inFlight);
      const refused = outcomes.filter((o): o is grpc.ServiceError => o !== "OK");
      for (const error of refused) {
        assert.equal(error.code, grpc.status.UNAVAILABLE, error.details);
        if (!cause.test(error.details)) {
          assert.equal(
            error.details,
            "model mnist-fragile: the inference worker running this request stopped (exit code 1); it has been restarted, retry the request",
          );
        }
      }
      // Queued when the worker died, failed with the cause once its restart failed.
      assert.ok(refused.filter((e) => cause.test(e.details)).length >= 5, "queued requests failed with the cause");
      const fresh = await failure(t.client.classify(request(NAME)));
      assert.equal(fresh.code, grpc.status.UNAVAILABLE);
      assert.match(fresh.details, cause);
      const streamed = await failure(t.client.collect(request(NAME)));
      assert.equal(streamed.code, grpc.status.UNAVAILABLE);
      assert.match(streamed.details, cause);

      assert.deepEqual(await healthOf(t.address, ["", modelHealthService(NAME), modelHealthService(MODEL_NAME)]), [
        "SERVING",
        "NOT_SERVING",
        "SERVING",
      ]);
      const described = await t.client.getModel(NAME);
      assert.equal(described.state, "MODEL_STATE_FAILED");
      assert.match(described.load_error, cause);
      const listed = (await t.client.listModels()).models.find((m) => m.name === NAME);
      assert.equal(listed?.state, "MODEL_STATE_FAILED");
      // The other model is untouched.
      assert.equal((await t.client.classify(request(MODEL_NAME))).top_k[0]?.index, c.label);
      const retried = t.logs.filter((line) => line.msg === "could not restart scheduler worker" && line.model === NAME);
      assert.ok(retried.length >= 1 && retried.every((line) => line.level === 50));

      // The graph comes back: a later restart succeeds, and the model serves again by itself.
      renameSync(join(dir, "tick.onnx.away"), join(dir, "tick.onnx"));
      const recovered = await until(
        () => t.client.getModel(NAME),
        (model) => model.state === "MODEL_STATE_READY",
      );
      assert.equal(recovered.state, "MODEL_STATE_READY");
      assert.equal(recovered.load_error, "");
      assert.deepEqual(await healthOf(t.address, [modelHealthService(NAME)]), ["SERVING"]);
      const answer = await t.client.classify(request(NAME));
      assert.equal(answer.top_k[0]?.index, c.label);
      assert.equal(answer.ticks_used, golden.ticks);
      assert.ok(t.logs.some((line) => line.msg === "scheduler worker restarted; serving again" && line.model === NAME));
    } finally {
      await t.close();
    }
  });
});

describe("a scheduler worker that dies during the drain", () => {
  const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
  const request = (i: number): ClassifyRequestMessage =>
    tensorRequest(golden.cases[i % golden.cases.length] as GoldenCase, {
      min_ticks: golden.ticks,
      max_ticks: golden.ticks,
    });

  it("fails its running request and the queue at once with UNAVAILABLE, so the drain ends without waiting out the grace period", async () => {
    // A grace period far longer than the test: a request left waiting for a slot would run into it.
    const graceMs = 60_000;
    const t = await startTestServer({ maxBatch: 1, graceMs });
    const calls = Array.from({ length: 40 }, (_, i) =>
      t.client.classify(request(i)).then(
        () => "OK" as const,
        (error: grpc.ServiceError) => error,
      ),
    );
    await until(
      () => t.metrics(),
      (text) => metricValue(text, "ctm_queue_depth") >= 20,
    );
    const stopped = t.server.shutdown();
    await killWorker(t);
    const outcomes = await Promise.all(calls);
    await stopped;
    t.client.close();

    const failed = outcomes.filter((o): o is grpc.ServiceError => o !== "OK");
    assert.ok(failed.length >= 20, `${failed.length} requests failed`);
    let running = 0;
    for (const error of failed) {
      assert.equal(error.code, grpc.status.UNAVAILABLE, error.details);
      if (error.details.includes("the inference worker running this request stopped")) {
        running++;
        assert.equal(
          error.details,
          "model mnist-ctm: the inference worker running this request stopped (exit code 1); the server is shutting down and does not restart it; retry the request on another server",
        );
      } else {
        assert.equal(
          error.details,
          "model mnist-ctm: its inference worker stopped during shutdown (exit code 1) and is not restarted; retry the request on another server",
        );
      }
    }
    assert.ok(running <= 1, `${running} requests were running on the one batch slot`);
    assert.ok(!t.logs.some((line) => line.msg === "grace period over; cancelling in-flight requests"));
    const exited = t.logs.find((line) => line.msg === "scheduler worker exited during shutdown; not restarting it");
    assert.equal(exited?.level, 50);
  });
});
