/**
 * Model control on a real server over loopback, through both protocols: versions served side by side
 * under a version policy, explicit load, unload and reload while requests run (an unloaded version's
 * in-flight requests, a stream among them, finish), polling the models folder (a new version folder,
 * a removed one, a broken one), health following the model set, per-version statistics, the modes'
 * refusals and the tokens.
 */
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  failure,
  type GoldenCase,
  MODEL_NAME,
  metricValue,
  readModelJson,
  startTestServer,
  type TestServer,
} from "../../../tools/harness/testServer.ts";
import type { ModelControlConfig, ServerConfig } from "../../src/config.ts";
import { parseVersionPolicies } from "../../src/engine/versionPolicy.ts";
import { modelHealthService } from "../../src/transport/health/modelHealth.ts";
import { healthOf } from "../support/healthClient.ts";
import {
  addVersion,
  InferenceTestClient,
  removeVersion,
  touchVersion,
  versionedModelsDir,
} from "../support/modelRepository.ts";

const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
const CASE = golden.cases[0] as GoldenCase;
const TICKS = golden.ticks;
/** Every tick: threshold 1 and max_ticks = the trained ticks, so that each request runs TICKS ticks. */
const ALL_TICKS = { certainty_threshold: 1, min_ticks: TICKS, max_ticks: TICKS };

function control(mode: ModelControlConfig["mode"], policy = "latest:1", loadModels: string[] = []): ModelControlConfig {
  return { mode, pollMs: 100, loadModels, versionPolicies: parseVersionPolicies(policy, "--version-policy") };
}

interface Running {
  t: TestServer;
  oip: InferenceTestClient;
  close(): Promise<void>;
}

async function serve(root: string, overrides: Partial<ServerConfig>): Promise<Running> {
  const t = await startTestServer({ modelsDir: root, graceMs: 30_000, ...overrides });
  const oip = new InferenceTestClient(t.address);
  return {
    t,
    oip,
    close: async () => {
      oip.close();
      await t.close();
    },
  };
}

/** A v2 ModelInferRequest of `rows` copies of the golden input. */
function infer(version = "", parameters: Record<string, number> = {}, rows = 1): object {
  return {
    model_name: MODEL_NAME,
    model_version: version,
    parameters: Object.fromEntries(Object.entries(parameters).map(([k, v]) => [k, { double_param: v }])),
    inputs: [
      {
        name: "input",
        datatype: "FP32",
        shape: [rows, ...CASE.input_shape],
        contents: { fp32_contents: Array.from({ length: rows }, () => CASE.input).flat() },
      },
    ],
  };
}

interface InferResponse {
  model_version: string;
  parameters: Record<string, { int64_param?: number; string_param?: string }>;
}

interface IndexResponse {
  models: { name: string; version: string; state: string; reason: string }[];
}

/** "version state" of each index entry of the model, e.g. ["1 UNAVAILABLE", "2 READY"]. */
async function states(oip: InferenceTestClient): Promise<string[]> {
  const { models } = await oip.call<IndexResponse>("RepositoryIndex", {});
  return models.filter((m) => m.name === MODEL_NAME).map((m) => `${m.version} ${m.state}`);
}

async function ready(oip: InferenceTestClient, version = ""): Promise<boolean> {
  const { ready } = await oip.call<{ ready: boolean }>("ModelReady", { name: MODEL_NAME, version });
  return ready;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const parameter = (key: string, value: string | number) => ({
  [key]: typeof value === "number" ? { int64_param: value } : { string_param: value },
});

describe("version policy", () => {
  it("serves the versions the policy selects side by side; no version means the highest", async () => {
    const s = await serve(versionedModelsDir([1, 2, 3]), { modelControl: control("none", "latest:2") });
    try {
      assert.deepEqual(await states(s.oip), ["1 UNAVAILABLE", "2 READY", "3 READY"]);
      const index = await s.oip.call<IndexResponse>("RepositoryIndex", {});
      assert.equal(index.models.find((m) => m.version === "1")?.reason, "not selected by version policy latest:2");
      assert.deepEqual(await s.oip.call<IndexResponse>("RepositoryIndex", { ready: true }), {
        models: [
          { name: MODEL_NAME, version: "2", state: "READY", reason: "" },
          { name: MODEL_NAME, version: "3", state: "READY", reason: "" },
        ],
      });
      assert.deepEqual(await Promise.all(["", "1", "2", "3"].map((v) => ready(s.oip, v))), [true, false, true, true]);
      const latest = await s.oip.call<InferResponse>("ModelInfer", infer());
      assert.equal(latest.model_version, "3");
      const second = await s.oip.call<InferResponse>("ModelInfer", infer("2"));
      assert.equal(second.model_version, "2");
      const refused = await failure(s.oip.call("ModelInfer", infer("1")));
      assert.equal(refused.code, grpc.status.NOT_FOUND);
      assert.equal(refused.details, 'model "mnist-ctm" version 1 is not loaded (loaded: mnist-ctm/3, mnist-ctm/2)');
      const metadata = await s.oip.call<{ versions: string[] }>("ModelMetadata", { name: MODEL_NAME });
      assert.deepEqual(metadata.versions, ["3", "2"]);
      const ctm = await s.t.client.classify({
        model: MODEL_NAME,
        version: 2,
        tensor: { shape: CASE.input_shape, values: CASE.input },
      });
      assert.equal(ctm.version, 2);
      const listed = await s.t.client.listModels();
      assert.deepEqual(
        listed.models.map((m) => m.version),
        [3, 2],
      );
    } finally {
      await s.close();
    }
  });

  it("takes a policy per model, and refuses a bad one naming the flag", async () => {
    const s = await serve(versionedModelsDir([1, 2, 3]), {
      modelControl: control("none", `latest:1; ${MODEL_NAME}=specific:1,3`),
    });
    try {
      assert.deepEqual(await states(s.oip), ["1 READY", "2 UNAVAILABLE", "3 READY"]);
    } finally {
      await s.close();
    }
    assert.throws(
      () => parseVersionPolicies("newest:2", "--version-policy"),
      /^ServerError: --version-policy must be latest, latest:N, all or specific:V\[,V\.\.\.\], got "newest:2"$/,
    );
  });
});

describe("explicit model control", () => {
  let s: Running;
  const root = versionedModelsDir([1, 2]);
  before(async () => {
    s = await serve(root, { modelControl: control("explicit") });
  });
  after(() => s.close());

  it("starts with nothing loaded unless --load-model names it", async () => {
    assert.deepEqual(await states(s.oip), ["1 UNAVAILABLE", "2 UNAVAILABLE"]);
    const index = await s.oip.call<IndexResponse>("RepositoryIndex", {});
    assert.ok(index.models.every((m) => m.reason === "unloaded"));
    assert.equal((await s.oip.call<{ ready: boolean }>("ServerReady", {})).ready, true);
    assert.equal(await ready(s.oip), false);
    const refused = await failure(s.oip.call("ModelInfer", infer()));
    assert.equal(refused.code, grpc.status.NOT_FOUND);
    assert.equal(refused.details, 'model "mnist-ctm" is not loaded (no models are loaded)');
  });

  it("loads, changes the version policy, unloads a version and the model; health follows", async () => {
    const health = () => healthOf(s.t.address, [modelHealthService(MODEL_NAME)]).then(([status]) => status);
    await s.oip.call("RepositoryModelLoad", { model_name: MODEL_NAME });
    assert.deepEqual(await states(s.oip), ["1 UNAVAILABLE", "2 READY"]);
    assert.equal(await health(), "SERVING");
    assert.equal(await ready(s.oip, "2"), true);

    await s.oip.call("RepositoryModelLoad", { model_name: MODEL_NAME, parameters: parameter("version_policy", "all") });
    assert.deepEqual(await states(s.oip), ["1 READY", "2 READY"]);
    const seriesOf = async () =>
      [...(await s.t.metrics()).matchAll(/^ctm_model_version_serving\{model="mnist-ctm",version="(\d+)"\} 1$/gm)]
        .map((m) => m[1])
        .sort();
    assert.deepEqual(await seriesOf(), ["1", "2"]);

    // tritonclient's load_model(config=...): Triton's configuration JSON, of which version_policy is read.
    const config = JSON.stringify({ version_policy: { specific: { versions: [1] } } });
    await s.oip.call("RepositoryModelLoad", { model_name: MODEL_NAME, parameters: parameter("config", config) });
    // Out of service at once; UNLOADING until its workers have stopped.
    assert.match((await states(s.oip)).join(), /^1 READY,2 (UNLOADING|UNAVAILABLE)$/);
    assert.equal((await s.oip.call<InferResponse>("ModelInfer", infer())).model_version, "1");

    // ctm.v1 does the same.
    const both = await ctmCall<{ models: { version: number; state: string }[] }>(s.t, "LoadModel", {
      name: MODEL_NAME,
      version_policy: "all",
    });
    assert.deepEqual(
      both.models.map((m) => `${m.version} ${m.state}`),
      ["1 REPOSITORY_STATE_READY", "2 REPOSITORY_STATE_READY"],
    );

    await s.oip.call("RepositoryModelUnload", { model_name: MODEL_NAME, parameters: parameter("version", 2) });
    await until("version 2 is unloaded", async () => (await states(s.oip)).includes("2 UNAVAILABLE"));
    assert.deepEqual(await states(s.oip), ["1 READY", "2 UNAVAILABLE"]);
    assert.equal(await health(), "SERVING");
    assert.deepEqual(await seriesOf(), ["1"], "the unloaded version's series is gone");

    const unloaded = await ctmCall<{ models: { version: number; state: string; reason: string }[] }>(
      s.t,
      "UnloadModel",
      { name: MODEL_NAME },
    );
    assert.deepEqual(
      unloaded.models.map((m) => m.version),
      [1, 2],
    );
    assert.ok(unloaded.models.every((m) => m.state !== "REPOSITORY_STATE_READY"));
    await until("the model is unloaded", async () =>
      (await states(s.oip)).every((state) => state.endsWith("UNAVAILABLE")),
    );
    assert.equal(await health(), "NOT_SERVING");
    assert.equal(await ready(s.oip), false);
    assert.equal((await failure(s.oip.call("ModelInfer", infer()))).code, grpc.status.NOT_FOUND);

    await s.oip.call("RepositoryModelLoad", { model_name: MODEL_NAME });
    assert.equal(await health(), "SERVING");
    assert.deepEqual(await states(s.oip), ["1 UNAVAILABLE", "2 READY"]);
  });

  it("refuses what it cannot do, naming the field and the bound", async () => {
    const cases: [object, grpc.status, RegExp][] = [
      [
        { model_name: "no-such-model" },
        grpc.status.NOT_FOUND,
        /^model "no-such-model" has no folder in \S+ \(it has: mnist-ctm\)$/,
      ],
      [
        { model_name: MODEL_NAME, parameters: parameter("version_policy", "latest:0") },
        grpc.status.INVALID_ARGUMENT,
        /^parameters\.version_policy must be latest, latest:N, all or specific:V\[,V\.\.\.\] \(N is a whole number of at least 1\), got "latest:0"$/,
      ],
      [
        { model_name: MODEL_NAME, parameters: parameter("version_policy", "specific:7") },
        grpc.status.FAILED_PRECONDITION,
        /^model mnist-ctm: version policy specific:7 selects none of its versions in \S+ \(2, 1\); nothing was changed$/,
      ],
      [
        { model_name: MODEL_NAME, parameters: parameter("temperature", "0.5") },
        grpc.status.INVALID_ARGUMENT,
        /^parameters\.temperature is not a load parameter this server reads; it reads config and version_policy$/,
      ],
      [
        { model_name: MODEL_NAME, parameters: parameter("config", '{"max_batch_size": 8}') },
        grpc.status.INVALID_ARGUMENT,
        /^parameters\.config\.max_batch_size is not read by this server/,
      ],
    ];
    for (const [request, code, message] of cases) {
      const error = await failure(s.oip.call("RepositoryModelLoad", request));
      assert.equal(error.code, code, error.details);
      assert.match(error.details, message);
    }
    const version = await failure(
      s.oip.call("RepositoryModelUnload", { model_name: MODEL_NAME, parameters: parameter("version", 7) }),
    );
    assert.equal(version.code, grpc.status.NOT_FOUND);
    assert.match(version.details, /^model "mnist-ctm" version 7 is not loaded \(loaded: mnist-ctm\/2\)$/);
  });

  it("reloads a version whose files changed; its statistics start afresh and requests during it finish", async () => {
    await s.oip.call("ModelInfer", infer("2", ALL_TICKS));
    const before = await stats(s.oip, "2");
    assert.equal(before.inference_count, 1);
    touchVersion(root, 2);
    const during = Array.from({ length: 6 }, () => s.oip.call<InferResponse>("ModelInfer", infer("2", ALL_TICKS)));
    await s.oip.call("RepositoryModelLoad", { model_name: MODEL_NAME });
    const answered = await Promise.all(during);
    assert.ok(answered.every((r) => r.parameters.ticks_used?.int64_param === TICKS));
    assert.ok(s.t.logs.some((line) => line.msg === "model version reloaded; the one it replaces is draining"));
    const after = await stats(s.oip, "2");
    assert.ok(after.inference_count < 1 + answered.length, "the reloaded version counts afresh");
    assert.deepEqual(await states(s.oip), ["1 UNAVAILABLE", "2 READY"]);
  });
});

describe("an unloaded version", () => {
  it("finishes its in-flight requests, a stream among them, and refuses new ones", async () => {
    const s = await serve(versionedModelsDir([1, 2]), {
      modelControl: control("explicit", "all", [MODEL_NAME]),
      // One row at a time: the requests queue behind the stream, so that they are in flight for a while.
      maxBatch: 1,
    });
    try {
      const stream = s.t.client.stream({
        model: MODEL_NAME,
        version: 2,
        tensor: { shape: CASE.input_shape, values: CASE.input },
        halt_policy: ALL_TICKS,
      });
      const ticks: number[] = [];
      let finalVersion = 0;
      const streamed = new Promise<void>((resolve, reject) => {
        stream.on("data", (tick: { tick: number; final: boolean; result?: { version: number } }) => {
          ticks.push(tick.tick);
          if (tick.final) finalVersion = tick.result?.version ?? 0;
        });
        stream.on("end", resolve);
        stream.on("error", reject);
      });
      const first = new Promise<void>((resolve) => stream.once("data", () => resolve()));
      let settled = 0;
      const queued = Array.from({ length: 8 }, () =>
        s.oip.call<InferResponse>("ModelInfer", infer("2", ALL_TICKS)).finally(() => settled++),
      );
      await first;
      await s.oip.call("RepositoryModelUnload", { model_name: MODEL_NAME, parameters: parameter("version", 2) });
      const pending = queued.length - settled;
      assert.ok(pending > 0, "requests were still in flight when the version was unloaded");
      assert.ok((await states(s.oip)).includes("2 UNLOADING"));
      const refused = await failure(s.oip.call("ModelInfer", infer("2")));
      assert.equal(refused.code, grpc.status.NOT_FOUND);
      assert.equal((await s.oip.call<InferResponse>("ModelInfer", infer())).model_version, "1");

      const answers = await Promise.all(queued);
      assert.ok(answers.every((a) => a.model_version === "2" && a.parameters.ticks_used?.int64_param === TICKS));
      await streamed;
      assert.deepEqual(
        ticks,
        Array.from({ length: TICKS }, (_, i) => i + 1),
      );
      assert.equal(finalVersion, 2);
      await until("version 2 has stopped", async () => (await states(s.oip)).includes("2 UNAVAILABLE"));
      // The model's gauges sum its versions; the unloaded one's are gone with it.
      assert.equal(metricValue(await s.t.metrics(), "ctm_active_requests", { model: MODEL_NAME }), 0);
    } finally {
      await s.close();
    }
  });
});

describe("polling the models folder", () => {
  it("loads a new version folder, unloads a removed one, and keeps serving past a broken one", async () => {
    const root = versionedModelsDir([1]);
    const s = await serve(root, { modelControl: control("poll") });
    // Sampled all along: a version switch never leaves the model without a serving version.
    let sampling = true;
    let notReady = 0;
    const sampler = (async () => {
      while (sampling) {
        if (!(await ready(s.oip))) notReady++;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      assert.deepEqual(await states(s.oip), ["1 READY"]);
      addVersion(root, 2);
      await until("version 2 serves and version 1 is gone", async () => {
        const now = await states(s.oip);
        return now.includes("2 READY") && now.includes("1 UNAVAILABLE");
      });
      assert.equal((await s.oip.call<InferResponse>("ModelInfer", infer())).model_version, "2");

      removeVersion(root, 2);
      await until("version 1 serves again", async () => (await states(s.oip)).join() === "1 READY");
      assert.equal((await s.oip.call<InferResponse>("ModelInfer", infer())).model_version, "1");

      // A version whose tick graph is cut short: it fails to load, and version 1 keeps serving.
      addVersion(root, 3, MODEL_NAME, true);
      const reasonOf3 = async () =>
        (await s.oip.call<IndexResponse>("RepositoryIndex", {})).models.find((m) => m.version === "3")?.reason ?? "";
      await until("version 3 is reported broken", async () => /tick\.onnx/.test(await reasonOf3()));
      assert.deepEqual(await states(s.oip), ["1 READY", "3 UNAVAILABLE"]);
      assert.equal((await s.oip.call<InferResponse>("ModelInfer", infer())).model_version, "1");
      sampling = false;
      await sampler;
      assert.equal(notReady, 0, "ModelReady stayed true through every change");
      // Polling owns the folder: explicit loads are refused, naming the flag.
      const refused = await failure(s.oip.call("RepositoryModelLoad", { model_name: MODEL_NAME }));
      assert.equal(refused.code, grpc.status.FAILED_PRECONDITION);
      assert.match(
        refused.details,
        /^explicit model load needs --model-control explicit; this server runs with --model-control poll/,
      );
    } finally {
      sampling = false;
      await sampler;
      await s.close();
    }
  });
});

interface Stats {
  name: string;
  version: string;
  last_inference: number;
  inference_count: number;
  execution_count: number;
  inference_stats: Record<string, { count: number; ns: number }>;
  batch_stats: { batch_size: number; compute_infer: { count: number; ns: number } }[];
  ctm_ticks: { computed: number; used: number; halts: Record<string, number> };
}

async function stats(oip: InferenceTestClient, version: string): Promise<Stats> {
  const { model_stats } = await oip.call<{ model_stats: Stats[] }>("ModelStatistics", { name: MODEL_NAME, version });
  assert.equal(model_stats.length, 1);
  return model_stats[0] as Stats;
}

function ctmCall<T>(t: TestServer, method: string, request: object, metadata = new grpc.Metadata()): Promise<T> {
  const fn = t.client.raw[method] as (
    r: object,
    m: grpc.Metadata,
    c: (error: grpc.ServiceError | null, response: T) => void,
  ) => void;
  return new Promise((resolve, reject) =>
    fn.call(t.client.raw, request, metadata, (error, response) => (error ? reject(error) : resolve(response))),
  );
}

describe("statistics", () => {
  it("count answered requests, their stages, tick runs by batch size and ticks, per version", async () => {
    const s = await serve(versionedModelsDir([1, 2]), { modelControl: control("none", "all") });
    try {
      const started = Date.now();
      await s.oip.call("ModelInfer", infer("2", ALL_TICKS, 3));
      await Promise.all([1, 2].map(() => s.oip.call("ModelInfer", infer("2", ALL_TICKS))));
      await s.oip.call("ModelInfer", infer("1", ALL_TICKS));
      // A refusal is not an inference.
      await failure(s.oip.call("ModelInfer", infer("2", { certainty_threshold: 2 })));

      const v2 = await stats(s.oip, "2");
      assert.equal(v2.inference_count, 5);
      for (const stage of ["success", "queue", "compute_input", "compute_infer", "compute_output"]) {
        assert.equal(v2.inference_stats[stage]?.count, 5, stage);
      }
      assert.equal(v2.inference_stats.fail?.count, 0);
      const { success, compute_infer } = v2.inference_stats as Record<string, { ns: number }>;
      assert.ok((compute_infer?.ns ?? 0) > 0 && (success?.ns ?? 0) >= (compute_infer?.ns ?? 0));
      assert.ok(v2.last_inference >= started && v2.last_inference <= Date.now());
      assert.deepEqual(v2.ctm_ticks.halts, { MAX_TICKS: 5 });
      assert.equal(v2.ctm_ticks.used, 5 * TICKS);
      // Every row of every tick run is a computed tick; the runs are the executions.
      const runs = v2.batch_stats.reduce((sum, b) => sum + b.compute_infer.count, 0);
      const rows = v2.batch_stats.reduce((sum, b) => sum + b.batch_size * b.compute_infer.count, 0);
      assert.equal(runs, v2.execution_count);
      assert.equal(rows, v2.ctm_ticks.computed);
      assert.ok(v2.ctm_ticks.computed >= 5 * TICKS && v2.execution_count >= TICKS);

      assert.equal((await stats(s.oip, "1")).inference_count, 1);
      const all = await s.oip.call<{ model_stats: Stats[] }>("ModelStatistics", {});
      assert.deepEqual(
        all.model_stats.map((m) => `${m.name}/${m.version}:${m.inference_count}`),
        ["mnist-ctm/1:1", "mnist-ctm/2:5"],
      );
      const ctm = await ctmCall<{ models: { version: number; inference_count: number; ticks: { used: number } }[] }>(
        s.t,
        "GetModelStatistics",
        { name: MODEL_NAME, version: 2 },
      );
      assert.deepEqual(
        ctm.models.map((m) => [m.version, m.inference_count, m.ticks.used]),
        [[2, 5, 5 * TICKS]],
      );
      const unknown = await failure(s.oip.call("ModelStatistics", { name: "no-such-model" }));
      assert.equal(unknown.code, grpc.status.NOT_FOUND);
      // --model-control none: what loaded at start-up serves until shutdown.
      const refused = await failure(s.oip.call("RepositoryModelUnload", { model_name: MODEL_NAME }));
      assert.equal(refused.code, grpc.status.FAILED_PRECONDITION);
      assert.match(
        refused.details,
        /^explicit model unload needs --model-control explicit; this server runs with --model-control none/,
      );
    } finally {
      await s.close();
    }
  });
});

describe("tokens", () => {
  it("guard the repository: changes need a token granted every model", async () => {
    const full = "full-token-0123456789";
    const limited = "limited-token-0123456789";
    const root = versionedModelsDir([1]);
    const tokensFile = join(root, "..", `tokens-${process.pid}`);
    writeFileSync(tokensFile, `${full}\n${limited} ${MODEL_NAME}\n`);
    const s = await serve(root, {
      modelControl: control("explicit", "latest:1", [MODEL_NAME]),
      auth: { tokens: [], tokensFile },
    });
    const as = (token: string) => {
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${token}`);
      return metadata;
    };
    try {
      const anonymous = await failure(s.oip.call("RepositoryIndex", {}));
      assert.equal(anonymous.code, grpc.status.UNAUTHENTICATED);
      const denied = await failure(s.oip.call("RepositoryModelUnload", { model_name: MODEL_NAME }, as(limited)));
      assert.equal(denied.code, grpc.status.PERMISSION_DENIED);
      assert.equal(
        denied.details,
        `RepositoryModelUnload changes what every client is served: it needs a bearer token granted every model (one listed without models); this one is granted: ${MODEL_NAME}`,
      );
      const ctmDenied = await failure(ctmCall(s.t, "LoadModel", { name: MODEL_NAME }, as(limited)));
      assert.equal(ctmDenied.code, grpc.status.PERMISSION_DENIED);
      const everyModel = await failure(s.oip.call("ModelStatistics", {}, as(limited)));
      assert.equal(everyModel.code, grpc.status.PERMISSION_DENIED);
      // Its own model's statistics and the index are the limited token's to read.
      await s.oip.call("ModelStatistics", { name: MODEL_NAME }, as(limited));
      assert.deepEqual((await s.oip.call<IndexResponse>("RepositoryIndex", {}, as(limited))).models.length, 1);
      await s.oip.call("RepositoryModelUnload", { model_name: MODEL_NAME }, as(full));
      await s.oip.call("RepositoryModelLoad", { model_name: MODEL_NAME }, as(full));
      assert.equal(await ready(s.oip), true);
    } finally {
      await s.close();
      rmSync(tokensFile, { force: true });
    }
  });
});
