/**
 * The Open Inference Protocol over HTTP/REST on a real server's HTTP port, with a real HTTP client:
 * the same answers as over gRPC (JSON tensors and Triton's binary tensor extension, images as b64),
 * and the refusals with the right HTTP status and a message that names the field, the bound and the
 * flag; tokens, the Origin check, metrics, and model control over REST. (tritonclient.http drives it
 * too: training/tests/test_open_inference_protocol.py.)
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import * as http from "node:http";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  type GoldenCase,
  MODEL_NAME,
  metricValue,
  readModelJson,
  samples,
  startTestServer,
  type TestServer,
} from "../../../tools/harness/testServer.ts";
import { parseVersionPolicies } from "../../src/engine/versionPolicy.ts";
import { InferenceTestClient, versionedModelsDir } from "../support/modelRepository.ts";

const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
const CASE = golden.cases[0] as GoldenCase;
const VALUES = CASE.input_shape.reduce((a, b) => a * b, 1);
const POLICY = { certainty_threshold: 0.9 };

interface Reply {
  status: number;
  headers: Headers;
  json: Record<string, unknown>;
  body: Buffer;
}

async function request(base: string, path: string, init: RequestInit = {}): Promise<Reply> {
  const response = await fetch(`${base}${path}`, init);
  const body = Buffer.from(await response.arrayBuffer());
  const length = response.headers.get("inference-header-content-length");
  const text = body.subarray(0, length === null ? body.length : Number(length)).toString("utf8");
  return { status: response.status, headers: response.headers, json: text ? JSON.parse(text) : {}, body };
}

const post = (base: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
  request(base, path, {
    method: "POST",
    body: Buffer.isBuffer(body) ? new Uint8Array(body) : typeof body === "string" ? body : JSON.stringify(body),
    headers,
  });

/** A JSON inference request for the golden input, as a KServe v2 client writes it. */
function jsonInfer(rows = 1, parameters: Record<string, unknown> = POLICY): object {
  return {
    id: "json",
    parameters,
    inputs: [
      {
        name: "input",
        datatype: "FP32",
        shape: [rows, ...CASE.input_shape],
        data: Array.from({ length: rows }, () => CASE.input).flat(),
      },
    ],
  };
}

/** The same request with Triton's binary tensor extension, both ways, as tritonclient.http sends it. */
function binaryInfer(rows = 1): { body: Buffer; headers: Record<string, string> } {
  const values = Float32Array.from(Array.from({ length: rows }, () => CASE.input).flat());
  const raw = Buffer.from(values.buffer);
  const json = Buffer.from(
    JSON.stringify({
      id: "binary",
      parameters: { ...POLICY, binary_data_output: true },
      inputs: [
        {
          name: "input",
          datatype: "FP32",
          shape: [rows, ...CASE.input_shape],
          parameters: { binary_data_size: raw.length },
        },
      ],
    }),
  );
  return {
    body: Buffer.concat([json, raw]),
    headers: { "inference-header-content-length": String(json.length), "content-type": "application/octet-stream" },
  };
}

interface Output {
  name: string;
  datatype: string;
  shape: number[];
  data?: (number | string)[];
  parameters?: { binary_data_size: number };
}

/** Each output's values, from `data` or from the binary data after the JSON header. */
function outputValues(reply: Reply): Record<string, (number | string)[]> {
  const outputs = reply.json.outputs as Output[];
  let at = Number(reply.headers.get("inference-header-content-length") ?? reply.body.length);
  const values: Record<string, (number | string)[]> = {};
  for (const output of outputs) {
    if (output.data) {
      values[output.name] = output.data;
      continue;
    }
    const size = output.parameters?.binary_data_size ?? 0;
    const bytes = reply.body.subarray(at, at + size);
    at += size;
    if (output.datatype === "FP32") values[output.name] = Array.from(new Float32Array(Uint8Array.from(bytes).buffer));
    else if (output.datatype === "INT32")
      values[output.name] = Array.from(new Int32Array(Uint8Array.from(bytes).buffer));
    else {
      const strings: string[] = [];
      for (let i = 0; i < bytes.length; ) {
        const length = bytes.readUInt32LE(i);
        strings.push(bytes.subarray(i + 4, i + 4 + length).toString("utf8"));
        i += 4 + length;
      }
      values[output.name] = strings;
    }
  }
  return values;
}

describe("the Open Inference Protocol over REST", () => {
  let t: TestServer;
  let base: string;
  let oip: InferenceTestClient;
  before(async () => {
    t = await startTestServer({ http: { host: "127.0.0.1", port: 0 } });
    base = `http://127.0.0.1:${t.server.httpPort}`;
    oip = new InferenceTestClient(t.address);
  });
  after(async () => {
    oip.close();
    await t.close();
  });

  it("answers health, metadata and configuration", async () => {
    assert.deepEqual((await request(base, "/v2/health/live")).json, { live: true });
    assert.deepEqual((await request(base, "/v2/health/ready")).json, { ready: true });
    assert.equal((await request(base, `/v2/models/${MODEL_NAME}/ready`)).status, 200);
    assert.equal((await request(base, `/v2/models/${MODEL_NAME}/versions/1/ready`)).status, 200);
    assert.equal((await request(base, `/v2/models/${MODEL_NAME}/versions/2/ready`)).status, 503);
    const server = await request(base, "/v2");
    assert.equal(server.json.name, "ctm-serve");
    const metadata = await request(base, `/v2/models/${MODEL_NAME}`);
    const grpcMetadata = await oip.call("ModelMetadata", { name: MODEL_NAME });
    assert.deepEqual(metadata.json, grpcMetadata);
    const config = await request(base, `/v2/models/${MODEL_NAME}/versions/1/config`);
    assert.equal(config.json.max_batch_size, 64);
    assert.equal(JSON.stringify(config.json).includes("null"), false, "absent fields are left out, not null");
  });

  it("infers what gRPC infers, from JSON tensors and from binary tensor data", async () => {
    const viaGrpc = await oip.call<{
      parameters: Record<string, { int64_param?: number }>;
      raw_output_contents: Buffer[];
    }>("ModelInfer", {
      model_name: MODEL_NAME,
      parameters: { certainty_threshold: { double_param: 0.9 } },
      inputs: [
        { name: "input", datatype: "FP32", shape: [1, ...CASE.input_shape], contents: { fp32_contents: CASE.input } },
      ],
    });
    const json = await post(base, `/v2/models/${MODEL_NAME}/infer`, jsonInfer());
    assert.equal(json.status, 200);
    assert.equal(json.headers.get("content-type"), "application/json; charset=utf-8");
    assert.equal(json.json.id, "json");
    const parameters = json.json.parameters as Record<string, unknown>;
    assert.equal(parameters.ticks_used, viaGrpc.parameters.ticks_used?.int64_param);
    assert.equal(parameters.threshold_used, 0.9);
    const fromJson = outputValues(json);
    const grpcProbabilities = Array.from(
      new Float32Array(Uint8Array.from(viaGrpc.raw_output_contents[0] as Buffer).buffer),
    );
    assert.deepEqual(fromJson.probabilities, grpcProbabilities);

    const { body, headers } = binaryInfer();
    const binary = await post(base, `/v2/models/${MODEL_NAME}/infer`, body, headers);
    assert.equal(binary.status, 200, JSON.stringify(binary.json));
    assert.ok(Number(binary.headers.get("inference-header-content-length")) > 0);
    const fromBinary = outputValues(binary);
    assert.deepEqual(fromBinary, fromJson);
    assert.deepEqual(
      (binary.json.outputs as Output[]).map((o) => o.parameters?.binary_data_size !== undefined),
      (binary.json.outputs as Output[]).map(() => true),
    );

    // A batch is its rows; a requested output can come as JSON while the rest are binary.
    const batch = await post(base, `/v2/models/${MODEL_NAME}/infer`, {
      ...jsonInfer(3),
      outputs: [{ name: "ticks_used", parameters: { binary_data: false } }, { name: "halt_reason" }],
    });
    assert.deepEqual(
      outputValues(batch).ticks_used,
      [1, 2, 3].map(() => parameters.ticks_used),
    );
    assert.deepEqual(
      (batch.json.outputs as Output[]).map((o) => o.name),
      ["ticks_used", "halt_reason"],
    );
  });

  it("reads encoded images as BYTES, from binary data or {b64} in JSON", async () => {
    const sample = samples()[3] as { png: Buffer; label: number };
    const reply = await post(base, `/v2/models/${MODEL_NAME}/infer`, {
      inputs: [{ name: "image", datatype: "BYTES", shape: [1, 1], data: [{ b64: sample.png.toString("base64") }] }],
      outputs: [{ name: "probabilities", parameters: { classification: 1 } }],
    });
    assert.equal(reply.status, 200, JSON.stringify(reply.json));
    assert.equal(String(outputValues(reply).probabilities?.[0]).split(":")[1], String(sample.label));
    const length = Buffer.alloc(4);
    length.writeUInt32LE(sample.png.length);
    const raw = Buffer.concat([length, sample.png]);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: "image", datatype: "BYTES", shape: [1, 1], parameters: { binary_data_size: raw.length } }],
        outputs: [{ name: "probabilities", parameters: { classification: 1 } }],
      }),
    );
    const binary = await post(base, `/v2/models/${MODEL_NAME}/infer`, Buffer.concat([header, raw]), {
      "inference-header-content-length": String(header.length),
    });
    assert.deepEqual(outputValues(binary).probabilities, outputValues(reply).probabilities);
  });

  it("refuses with the right HTTP status and a message naming the field, the bound and the flag", async () => {
    const infer = `/v2/models/${MODEL_NAME}/infer`;
    const raw = binaryInfer();
    const cases: [string, () => Promise<Reply>, number, RegExp | string][] = [
      [
        "unknown model",
        () => post(base, "/v2/models/no-such-model/infer", jsonInfer()),
        404,
        'model "no-such-model" is not loaded (loaded: mnist-ctm/1)',
      ],
      [
        "unknown version",
        () => post(base, `/v2/models/${MODEL_NAME}/versions/2/infer`, jsonInfer()),
        404,
        'model "mnist-ctm" version 2 is not loaded (loaded: mnist-ctm/1)',
      ],
      [
        "version that is no number",
        () => request(base, `/v2/models/${MODEL_NAME}/versions/latest`),
        400,
        'version must be empty (the highest loaded version) or a positive integer, got "latest"',
      ],
      ["bad JSON", () => post(base, infer, "{not json"), 400, /^the request body is not valid JSON: /],
      [
        "misspelt field",
        () => post(base, infer, { ...jsonInfer(), input: [] }),
        400,
        'the request body has unknown field "input"; known: id, parameters, inputs, outputs',
      ],
      [
        "parameter out of bounds",
        () => post(base, infer, jsonInfer(1, { certainty_threshold: 1.5 })),
        400,
        "parameters.certainty_threshold must be in (0, 1], got 1.5",
      ],
      [
        "too few values",
        () =>
          post(base, infer, {
            inputs: [{ name: "input", datatype: "FP32", shape: [1, ...CASE.input_shape], data: [1, 2, 3] }],
          }),
        400,
        `inputs[0].data must have ${VALUES} values for shape [1, ${CASE.input_shape.join(", ")}], got 3`,
      ],
      [
        "a value that is not a number",
        () =>
          post(base, infer, {
            inputs: [{ name: "input", datatype: "FP32", shape: [1, ...CASE.input_shape], data: ["x"] }],
          }),
        400,
        'inputs[0].data[0] must be a number (FP32), got "x"',
      ],
      [
        "more values than a batch holds",
        () =>
          post(base, infer, {
            inputs: [
              {
                name: "input",
                datatype: "FP32",
                shape: [65, ...CASE.input_shape],
                data: new Array(65 * VALUES).fill(0),
              },
            ],
          }),
        400,
        `inputs[0].data holds more than the ${64 * VALUES} values a batch may carry (--max-tensor-values ${VALUES} x --max-batch 64); refused before decoding`,
      ],
      [
        "binary data no input claims",
        () => {
          const header = Buffer.from(
            JSON.stringify({
              inputs: [
                {
                  name: "input",
                  datatype: "FP32",
                  shape: [1, ...CASE.input_shape],
                  parameters: { binary_data_size: VALUES * 4 - 8 },
                },
              ],
            }),
          );
          const body = Buffer.concat([header, Buffer.alloc(VALUES * 4)]);
          return post(base, infer, body, { "inference-header-content-length": String(header.length) });
        },
        400,
        "the body holds 8 bytes of binary data after the JSON header that no input's parameters.binary_data_size claims",
      ],
      [
        "binary data of the wrong size",
        () => {
          const header = Buffer.from(
            JSON.stringify({
              inputs: [
                {
                  name: "input",
                  datatype: "FP32",
                  shape: [1, ...CASE.input_shape],
                  parameters: { binary_data_size: 8 },
                },
              ],
            }),
          );
          return post(base, infer, Buffer.concat([header, Buffer.alloc(8)]), {
            "inference-header-content-length": String(header.length),
          });
        },
        400,
        `inputs[0]'s binary data (parameters.binary_data_size) must be 1 x ${VALUES} x 4 = ${VALUES * 4} bytes (FP32, shape [1, ${CASE.input_shape.join(", ")}]), got 8`,
      ],
      [
        "a header length past the body",
        () => post(base, infer, raw.body, { "inference-header-content-length": String(raw.body.length + 1) }),
        400,
        `header Inference-Header-Content-Length must be the length of the JSON at the start of the body, at most its ${raw.body.length} bytes, got "${raw.body.length + 1}"`,
      ],
      [
        "a compressed body",
        () => post(base, infer, jsonInfer(), { "content-encoding": "gzip" }),
        415,
        /^Content-Encoding "gzip" is not accepted/,
      ],
      [
        "a method the endpoint does not take",
        () => request(base, infer),
        405,
        /^GET \/v2\/models\/mnist-ctm\/infer is not served: ModelInfer takes POST$/,
      ],
      [
        "no such endpoint",
        () => request(base, "/v2/nothing"),
        404,
        /^no endpoint at \/v2\/nothing; the Open Inference Protocol's REST endpoints are /,
      ],
      [
        "statistics of a model not loaded",
        () => request(base, "/v2/models/no-such-model/stats"),
        404,
        'model "no-such-model" is not loaded (loaded: mnist-ctm/1)',
      ],
      [
        "model control in --model-control none",
        () => post(base, `/v2/repository/models/${MODEL_NAME}/unload`, {}),
        400,
        /^explicit model unload needs --model-control explicit; this server runs with --model-control none/,
      ],
    ];
    for (const [what, send, status, message] of cases) {
      const reply = await send();
      assert.equal(reply.status, status, `${what}: ${JSON.stringify(reply.json)}`);
      const error = String(reply.json.error);
      if (typeof message === "string") assert.equal(error, message, what);
      else assert.match(error, message, what);
    }
    // Still serving, unharmed.
    assert.equal((await post(base, infer, jsonInfer())).status, 200);
  });

  it("refuses a body over its bound before reading it, naming the flag", async () => {
    const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        `${base}/v2/models/${MODEL_NAME}/infer`,
        { method: "POST", headers: { "content-length": String(500_000_000) } },
        (res) => {
          let body = "";
          res.on("data", (chunk) => {
            body += chunk;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on("error", reject);
      req.write("{");
    });
    assert.equal(reply.status, 429);
    assert.match(
      JSON.parse(reply.body).error,
      /^the request body is 500000000 bytes, beyond the \d+ an inference request may have here: .*--max-message-bytes \d+.*raise --max-image-bytes for larger images$/,
    );
  });

  it("counts REST calls in the request metrics and in the model's statistics", async () => {
    const before = await request(base, `/v2/models/${MODEL_NAME}/versions/1/stats`);
    const count = (before.json.model_stats as { inference_count: number }[])[0]?.inference_count ?? 0;
    await post(base, `/v2/models/${MODEL_NAME}/infer`, jsonInfer(2));
    const after = await request(base, `/v2/models/${MODEL_NAME}/stats`);
    const [stats] = after.json.model_stats as { inference_count: number; ctm_ticks: { used: number } }[];
    assert.equal(stats?.inference_count, count + 2);
    assert.ok((stats?.ctm_ticks.used ?? 0) > 0);
    const text = await t.metrics();
    assert.ok(metricValue(text, "ctm_requests_total", { method: "RestModelInfer", status: "OK" }) >= 1);
    assert.ok(metricValue(text, "ctm_requests_total", { method: "RestModelInfer", status: "INVALID_ARGUMENT" }) >= 1);
  });
});

describe("the Open Inference Protocol over REST with tokens and model control", () => {
  const full = "rest-full-token-0123456789";
  const limited = "rest-limited-token-0123456789";
  let t: TestServer;
  let base: string;
  before(async () => {
    const root = versionedModelsDir([1, 2]);
    const tokensFile = join(root, "tokens");
    writeFileSync(tokensFile, `${full}\n${limited} some-other-model\n`);
    t = await startTestServer({
      http: { host: "127.0.0.1", port: 0 },
      modelsDir: root,
      auth: { tokens: [], tokensFile },
      modelControl: {
        mode: "explicit",
        pollMs: 1000,
        loadModels: [MODEL_NAME],
        versionPolicies: parseVersionPolicies("latest:1", "--version-policy"),
      },
    });
    base = `http://127.0.0.1:${t.server.httpPort}`;
  });
  after(() => t.close());
  const as = (token: string) => ({ authorization: `Bearer ${token}` });

  it("lets health through without a token and guards everything else as gRPC does", async () => {
    assert.equal((await request(base, "/v2/health/ready")).status, 200);
    assert.equal((await request(base, `/v2/models/${MODEL_NAME}/ready`)).status, 200);
    const anonymous = await post(base, `/v2/models/${MODEL_NAME}/infer`, jsonInfer());
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.json.error, 'this server needs a bearer token: send "Authorization: Bearer <token>"');
    const other = await post(base, `/v2/models/${MODEL_NAME}/infer`, jsonInfer(), as(limited));
    assert.equal(other.status, 403);
    assert.equal(
      other.json.error,
      'this bearer token may not call model "mnist-ctm" (request field the model in the URL); it is granted: some-other-model',
    );
    const unload = await post(base, `/v2/repository/models/${MODEL_NAME}/unload`, {}, as(limited));
    assert.equal(unload.status, 403);
    assert.match(
      String(unload.json.error),
      /^RepositoryModelUnload changes what every client is served: it needs a bearer token granted every model/,
    );
    const page = await post(base, `/v2/models/${MODEL_NAME}/infer`, jsonInfer(), {
      ...as(full),
      origin: "https://elsewhere.example",
    });
    assert.equal(page.status, 403);
    assert.match(String(page.json.error), /this request came from "https:\/\/elsewhere\.example"/);
    assert.equal((await post(base, `/v2/models/${MODEL_NAME}/infer`, jsonInfer(), as(full))).status, 200);
  });

  it("loads and unloads models and versions, and indexes them", async () => {
    const index = async () =>
      (
        (await post(base, "/v2/repository/index", {}, as(full))).json as unknown as { version: string; state: string }[]
      ).map((m) => `${m.version} ${m.state}`);
    assert.deepEqual(await index(), ["1 UNAVAILABLE", "2 READY"]);
    const load = await post(
      base,
      `/v2/repository/models/${MODEL_NAME}/load`,
      { parameters: { config: JSON.stringify({ version_policy: { all: {} } }) } },
      as(full),
    );
    assert.equal(load.status, 200, JSON.stringify(load.json));
    assert.deepEqual(await index(), ["1 READY", "2 READY"]);
    assert.equal((await request(base, `/v2/models/${MODEL_NAME}/versions/1/ready`)).status, 200);
    const one = await post(
      base,
      `/v2/repository/models/${MODEL_NAME}/unload`,
      { parameters: { version: "1" } },
      as(full),
    );
    assert.equal(one.status, 200, JSON.stringify(one.json));
    assert.equal((await request(base, `/v2/models/${MODEL_NAME}/versions/1/ready`)).status, 503);
    const all = await post(base, `/v2/repository/models/${MODEL_NAME}/unload`, {}, as(full));
    assert.equal(all.status, 200);
    assert.equal((await request(base, `/v2/models/${MODEL_NAME}/ready`)).status, 503);
    const bad = await post(base, `/v2/repository/models/${MODEL_NAME}/load`, { parameters: { config: "{" } }, as(full));
    assert.equal(bad.status, 400);
    assert.match(String(bad.json.error), /^parameters\.config is not valid JSON: /);
    const unknown = await post(base, "/v2/repository/models/no-such-model/load", {}, as(full));
    assert.equal(unknown.status, 404);
    assert.equal((await post(base, `/v2/repository/models/${MODEL_NAME}/load`, {}, as(full))).status, 200);
    assert.equal((await request(base, `/v2/models/${MODEL_NAME}/ready`)).status, 200);
  });
});
