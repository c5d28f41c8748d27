/**
 * The playground's HTTP port: the page and its assets (local only), and the JSON + server-sent-events
 * bridge, which must give what gRPC gives for the same request: the same ticks, the same errors in the
 * same words, the same token rules, counted in the same metrics.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { status } from "@grpc/grpc-js";
import fc from "fast-check";
import {
  failure,
  type GoldenCase,
  MODEL_NAME,
  metricValue,
  modelDir,
  readModelJson,
  samples,
  startTestServer,
  type TestServer,
  testConfig,
} from "../../../tools/harness/testServer.ts";
import {
  type ClassifyRequestMessage,
  loadProtocol,
  type TickUpdateMessage,
} from "../../src/transport/ctmV1/ctmProtocol.ts";
import { CLASSIFY_REQUEST_FIELDS, HALT_POLICY_FIELDS } from "../../src/transport/http/jsonRequest.ts";
import { PLAYGROUND_DIR } from "../../src/transport/http/playgroundHttp.ts";

interface ServerSentEvent {
  event: string;
  data: unknown;
}

function post(url: string, body: unknown): Promise<Response> {
  return fetch(url, { method: "POST", body: JSON.stringify(body) });
}

function parseEvents(text: string): ServerSentEvent[] {
  return text
    .split("\n\n")
    .filter((block) => block.trim() !== "")
    .map((block) => {
      const lines = block.split("\n");
      const event = (lines.find((l) => l.startsWith("event: ")) ?? "event: message").slice(7);
      const data = lines
        .filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6))
        .join("");
      return { event, data: JSON.parse(data) };
    });
}

describe("playground over HTTP", () => {
  let t: TestServer;
  let base: string;
  const three = samples().find((s) => s.label === 3);
  before(async () => {
    t = await startTestServer({ http: { host: "127.0.0.1", port: 0 } });
    base = `http://127.0.0.1:${t.server.httpPort}`;
  });
  after(() => t.close());

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${base}/api/classify`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });

  it("serves the page and its assets, none of which loads anything from elsewhere", async () => {
    for (const path of ["/", "/playground.js", "/playground.css"]) {
      const response = await fetch(`${base}${path}`);
      assert.equal(response.status, 200, path);
      assert.match(response.headers.get("content-security-policy") ?? "", /default-src 'self'/);
    }
    for (const file of readdirSync(PLAYGROUND_DIR)) {
      const text = readFileSync(join(PLAYGROUND_DIR, file), "utf8");
      assert.doesNotMatch(text, /(src|href)=["']?(https?:)?\/\//i, `${file} links to another origin`);
      assert.doesNotMatch(text, /(import|fetch)\(?\s*["']https?:/i, `${file} loads from another origin`);
    }
    const missing = await fetch(`${base}/../../package.json`);
    assert.equal(missing.status, 404);
  });

  it("lists the models with their samples and attention shape, and serves a sample", async () => {
    const { models } = (await (await fetch(`${base}/api/models`)).json()) as {
      models: { name: string; attention_shape: number[]; samples: { file: string; label: number }[] }[];
    };
    const model = models.find((m) => m.name === MODEL_NAME);
    assert.ok(model && model.samples.length > 0);
    assert.deepEqual(model.attention_shape, [4, 7, 7]);
    const first = model.samples[0] as { file: string };
    const png = await fetch(`${base}/api/models/${MODEL_NAME}/samples/${first.file}`);
    assert.equal(png.headers.get("content-type"), "image/png");
    assert.deepEqual(Buffer.from(await png.arrayBuffer()), readFileSync(join(modelDir(), "samples", first.file)));
    const outside = await fetch(`${base}/api/models/${MODEL_NAME}/samples/..%2Fmanifest.json`);
    assert.equal(outside.status, 404);
    assert.match(((await outside.json()) as { message: string }).message, /has no sample/);
    const malformed = await fetch(`${base}/api/models/${MODEL_NAME}/samples/%E0%A4%A`);
    assert.equal(malformed.status, 400);
  });

  it("streams the same ticks as gRPC for the same image, the preprocessed input first", async () => {
    assert.ok(three, "the shipped model has a sample of a 3");
    const policy = { certainty_threshold: 0.9 };
    const response = await post({
      model: MODEL_NAME,
      image: { data: three.png.toString("base64") },
      halt_policy: policy,
      include_attention: true,
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
    const events = parseEvents(await response.text());
    const [input, ...rest] = events as [ServerSentEvent, ...ServerSentEvent[]];
    assert.equal(input.event, "input");
    const prepared = input.data as { shape: number[]; values: number[] };
    assert.deepEqual(prepared.shape, [1, 28, 28]);
    assert.equal(prepared.values.length, 784);
    const ticks = rest.map((e) => {
      assert.equal(e.event, "tick");
      return e.data as TickUpdateMessage;
    });
    const request: ClassifyRequestMessage = {
      model: MODEL_NAME,
      image: { data: three.png },
      halt_policy: policy,
      include_attention: true,
    };
    const grpcTicks = await t.client.collect(request);
    assert.equal(ticks.length, grpcTicks.length);
    ticks.forEach((tick, i) => {
      const other = grpcTicks[i] as TickUpdateMessage;
      assert.equal(tick.tick, other.tick);
      for (const [j, v] of tick.logits.entries()) assert.ok(Math.abs(v - (other.logits[j] as number)) < 1e-4);
      for (const [j, v] of tick.attention.entries()) assert.ok(Math.abs(v - (other.attention[j] as number)) < 1e-4);
      assert.deepEqual(tick.attention_shape, [4, 7, 7]);
    });
    const last = ticks.at(-1) as TickUpdateMessage;
    assert.equal(last.final, true);
    assert.equal(last.result?.top_k[0]?.label, "3");
    assert.equal(last.result?.halt_reason, (grpcTicks.at(-1) as TickUpdateMessage).halt_reason);
    const metrics = await t.metrics();
    assert.ok(metricValue(metrics, "ctm_requests_total", { method: "HttpClassifyStream", status: "OK" }) >= 1);
  });

  it("refuses what gRPC refuses, in gRPC's words, with a matching HTTP status", async () => {
    const png = (three as { png: Buffer }).png;
    const cases: [ClassifyRequestMessage, object, number][] = [
      [
        { model: MODEL_NAME, image: { data: png }, halt_policy: { certainty_threshold: 1.5 } },
        { model: MODEL_NAME, image: { data: png.toString("base64") }, halt_policy: { certainty_threshold: 1.5 } },
        400,
      ],
      [{ model: "nope", image: { data: png } }, { model: "nope", image: { data: png.toString("base64") } }, 404],
      [
        { model: MODEL_NAME, image: { data: Buffer.from("not an image") } },
        { model: MODEL_NAME, image: { data: Buffer.from("not an image").toString("base64") } },
        400,
      ],
      [
        { model: MODEL_NAME, image: { data: png }, halt_policy: { max_ticks: 999 } },
        { model: MODEL_NAME, image: { data: png.toString("base64") }, halt_policy: { max_ticks: 999 } },
        400,
      ],
    ];
    for (const [grpcRequest, json, httpStatus] of cases) {
      const grpcError = await failure(t.client.collect(grpcRequest));
      const response = await post(json);
      assert.equal(response.status, httpStatus, grpcError.details);
      const body = (await response.json()) as { code: string; message: string };
      assert.deepEqual(body, { code: status[grpcError.code], message: grpcError.details });
    }
  });

  it("takes exactly the fields of the proto's ClassifyRequest and HaltPolicy", () => {
    const fieldsOf = (type: string) =>
      (loadProtocol().packageDefinition[type] as { type: { field: { name: string }[] } }).type.field.map((f) => f.name);
    assert.deepEqual([...CLASSIFY_REQUEST_FIELDS].sort(), fieldsOf("ctm.v1.ClassifyRequest").sort());
    assert.deepEqual([...HALT_POLICY_FIELDS].sort(), fieldsOf("ctm.v1.HaltPolicy").sort());
  });

  it("a second server on the same --http-port fails to start, naming the port and the flag", async () => {
    const taken = t.server.httpPort as number;
    await assert.rejects(
      startTestServer({ http: { host: "127.0.0.1", port: taken } }),
      new RegExp(
        `cannot serve the playground on 127\\.0\\.0\\.1:${taken} \\(--http-port\\): the port is in use \\(another ctm-serve\\?\\); choose another --http-port \\(or CTM_HTTP_PORT\\), or stop what holds it; --http-port 0 turns it off$`,
      ),
    );
  });

  it("names the field of a JSON body of the wrong shape", async () => {
    const cases: [string | object, RegExp][] = [
      ["{not json", /^the request body is not valid JSON/],
      [[1], /^the request body must be a JSON object, got an array/],
      [{ model: 7 }, /^model must be a string, got 7/],
      [
        { model: MODEL_NAME, halt_policy: { min_ticks: -1 } },
        /^halt_policy\.min_ticks must be an integer in \[0, 4294967295\], got -1/,
      ],
      [{ model: MODEL_NAME, image: { data: "***" } }, /^image\.data must be base64/],
      [{ model: MODEL_NAME, halt_policy: { threshold: 0.5 } }, /^halt_policy has unknown field "threshold"/],
    ];
    for (const [body, message] of cases) {
      const response = await post(body);
      assert.equal(response.status, 400, JSON.stringify(body));
      const error = (await response.json()) as { code: string; message: string };
      assert.equal(error.code, "INVALID_ARGUMENT");
      assert.match(error.message, message);
    }
  });
});

describe("playground over HTTP: request size", () => {
  let t: TestServer;
  before(async () => {
    // Smaller than the shipped samples, so that an image is refused for its size alone.
    const limits = { ...testConfig().limits, maxImageBytes: 200 };
    t = await startTestServer({ http: { host: "127.0.0.1", port: 0 }, limits });
  });
  after(() => t.close());

  it("refuses an image beyond --max-image-bytes as gRPC does, and a body beyond the JSON limit", async () => {
    const url = `http://127.0.0.1:${t.server.httpPort}/api/classify`;
    const png = (samples()[0] as { png: Buffer }).png;
    assert.ok(png.length > 200);
    const grpcError = await failure(t.client.collect({ model: MODEL_NAME, image: { data: png } }));
    const response = await post(url, { model: MODEL_NAME, image: { data: png.toString("base64") } });
    assert.equal(response.status, 429);
    assert.deepEqual(await response.json(), { code: "RESOURCE_EXHAUSTED", message: grpcError.details });
    assert.match(grpcError.details, /--max-image-bytes/);

    const big = await post(url, { model: MODEL_NAME, image: { data: "A".repeat(2_000_000) } });
    assert.equal(big.status, 429);
    const error = (await big.json()) as { code: string; message: string };
    assert.equal(error.code, "RESOURCE_EXHAUSTED");
    assert.match(
      error.message,
      /^the request body is \d+ bytes, beyond the \d+ this server reads: an image of up to --max-image-bytes, base64-encoded, or a tensor of up to --max-tensor-values values, as JSON; raise --max-image-bytes for larger images$/,
    );
    // A tensor still fits, and runs.
    const golden = readModelJson<{ cases: GoldenCase[] }>("golden.json").cases[0] as GoldenCase;
    const ok = await post(url, { model: MODEL_NAME, tensor: { shape: golden.input_shape, values: golden.input } });
    assert.equal(ok.status, 200);
    assert.ok(parseEvents(await ok.text()).some((e) => (e.data as TickUpdateMessage).final));
  });
});

describe("playground over HTTP: the in-flight bound", () => {
  let t: TestServer;
  before(async () => {
    const limits = { ...testConfig().limits, maxInflightBytes: 1024 };
    t = await startTestServer({ http: { host: "127.0.0.1", port: 0 }, limits });
  });
  after(() => t.close());

  it("counts a body against --max-inflight-bytes, as gRPC counts a message", async () => {
    const png = (samples()[0] as { png: Buffer }).png.toString("base64");
    const body = JSON.stringify({ model: MODEL_NAME, image: { data: png.repeat(4) } });
    assert.ok(body.length > 1024);
    const response = await fetch(`http://127.0.0.1:${t.server.httpPort}/api/classify`, { method: "POST", body });
    assert.equal(response.status, 429);
    const error = (await response.json()) as { code: string; message: string };
    assert.equal(error.code, "RESOURCE_EXHAUSTED");
    assert.equal(
      error.message,
      `the server holds 0 bytes of requests in progress; this ${body.length}-byte request would pass the 1024 it allows (--max-inflight-bytes); retry shortly`,
    );
  });
});

describe("playground over HTTP: hostile JSON", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ http: { host: "127.0.0.1", port: 0 } });
  });
  after(() => t.close());

  it("answers random bodies with a refusal that names what is wrong, or a run; never INTERNAL", async (context) => {
    const png = (samples()[0] as { png: Buffer }).png.toString("base64");
    const anyJson = fc.jsonValue({ maxDepth: 3 });
    const field = <T>(arbitrary: fc.Arbitrary<T>) =>
      fc.oneof({ arbitrary, weight: 6 }, { arbitrary: anyJson, weight: 1 });
    // Mostly the right shape with wrong values, so that the checks past the JSON types are reached too.
    const body = fc.oneof(
      { arbitrary: anyJson, weight: 1 },
      {
        weight: 3,
        arbitrary: fc.record(
          {
            model: field(fc.constantFrom(MODEL_NAME, MODEL_NAME, MODEL_NAME, "", "nope")),
            version: field(fc.constantFrom(0, 1, 2, -1, 1.5, 2 ** 32)),
            image: field(fc.record({ data: field(fc.constantFrom(png, png, png, "", "AAAA", "%%%")) })),
            halt_policy: field(
              fc.record(
                {
                  certainty_threshold: field(fc.oneof(fc.constantFrom(0.5, 0.9, 1), fc.double())),
                  target_accuracy: field(fc.oneof(fc.constantFrom(0.9, 0.99), fc.double())),
                  min_ticks: field(fc.integer({ min: -5, max: 40 })),
                  max_ticks: field(fc.integer({ min: -5, max: 40 })),
                },
                { requiredKeys: [] },
              ),
            ),
            top_k: field(fc.integer({ min: -2, max: 12 })),
            include_attention: field(fc.boolean()),
          },
          { requiredKeys: ["model", "image"] },
        ),
      },
      // Both inputs at once, or a tensor of any shape.
      {
        weight: 1,
        arbitrary: fc.record(
          {
            model: fc.constant(MODEL_NAME),
            image: fc.constant({ data: png }),
            tensor: fc.record({ shape: anyJson, values: anyJson }),
          },
          { requiredKeys: ["model", "tensor"] },
        ),
      },
    );
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(body, async (value) => {
        const response = await fetch(`http://127.0.0.1:${t.server.httpPort}/api/classify`, {
          method: "POST",
          body: JSON.stringify(value),
        });
        const text = await response.text();
        const what = `${JSON.stringify(value).slice(0, 200)} -> ${response.status} ${text.slice(0, 200)}`;
        if (response.status === 200) {
          seen.set("OK", (seen.get("OK") ?? 0) + 1);
          assert.ok(
            parseEvents(text).some((e) => e.event === "tick" && (e.data as TickUpdateMessage).final),
            what,
          );
          return;
        }
        const error = JSON.parse(text) as { code: string; message: string };
        seen.set(error.code, (seen.get(error.code) ?? 0) + 1);
        assert.ok([400, 404].includes(response.status), what);
        assert.ok(["INVALID_ARGUMENT", "NOT_FOUND"].includes(error.code), what);
        assert.ok(error.message.length > 0, what);
      }),
      { numRuns: 100_000, interruptAfterTimeLimit: 4000, markInterruptAsFailure: false, endOnFailure: true },
    );
    context.diagnostic([...seen].map(([code, n]) => `${code} ${n}`).join(", "));
    assert.ok((seen.get("OK") ?? 0) > 0 && (seen.get("INVALID_ARGUMENT") ?? 0) > 0, "both runs and refusals");
  });
});

describe("playground over HTTP with bearer tokens", () => {
  const all = "a".repeat(24);
  const other = "b".repeat(24);
  let t: TestServer;
  let base: string;
  before(async () => {
    const file = join(tmpdir(), `ctm-playground-tokens-${process.pid}`);
    writeFileSync(file, `${all}\n${other} some-other-model\n`);
    t = await startTestServer({ http: { host: "127.0.0.1", port: 0 }, auth: { tokens: [], tokensFile: file } });
    base = `http://127.0.0.1:${t.server.httpPort}`;
  });
  after(() => t.close());

  it("serves the page to anyone, and the API only with a token granted the model", async () => {
    assert.equal((await fetch(`${base}/`)).status, 200);
    const png = (samples()[0] as { png: Buffer }).png.toString("base64");
    const call = (token?: string) =>
      fetch(`${base}/api/classify`, {
        method: "POST",
        headers: token ? { authorization: `Bearer ${token}` } : {},
        body: JSON.stringify({ model: MODEL_NAME, image: { data: png } }),
      });
    const none = await call();
    assert.equal(none.status, 401);
    assert.equal(((await none.json()) as { code: string }).code, "UNAUTHENTICATED");
    assert.equal((await fetch(`${base}/api/models`)).status, 401);
    assert.equal((await call("c".repeat(24))).status, 401);
    const denied = await call(other);
    assert.equal(denied.status, 403);
    assert.match(((await denied.json()) as { message: string }).message, /may not call model "mnist-ctm"/);
    const allowed = await call(all);
    assert.equal(allowed.status, 200);
    assert.ok(parseEvents(await allowed.text()).some((e) => (e.data as TickUpdateMessage).final));
  });
});

describe("playground over HTTP: a browser that goes away", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ http: { host: "127.0.0.1", port: 0 } });
  });
  after(() => t.close());

  it("cancels the request: the engine drops it and it is counted CANCELLED", async () => {
    const png = (samples()[0] as { png: Buffer }).png.toString("base64");
    // min_ticks = max_ticks = 15 keeps it running long past the first tick the client reads.
    const body = JSON.stringify({
      model: MODEL_NAME,
      image: { data: png },
      halt_policy: { certainty_threshold: 1, min_ticks: 15, max_ticks: 15 },
    });
    await new Promise<void>((resolve, reject) => {
      const req = http.request(
        { host: "127.0.0.1", port: t.server.httpPort, path: "/api/classify", method: "POST" },
        (res) => {
          res.on("data", (chunk: Buffer) => {
            if (chunk.toString().includes("event: tick")) {
              req.destroy();
              resolve();
            }
          });
        },
      );
      req.on("error", (error) => (req.destroyed ? undefined : reject(error)));
      req.end(body);
    });
    const cancelled = { method: "HttpClassifyStream", status: "CANCELLED" };
    for (let i = 0; i < 100 && metricValue(await t.metrics(), "ctm_requests_total", cancelled) === 0; i++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(metricValue(await t.metrics(), "ctm_requests_total", cancelled), 1);
    assert.equal(
      metricValue(await t.metrics(), "ctm_requests_total", { method: "HttpClassifyStream", status: "OK" }),
      0,
    );
  });
});

describe("playground over HTTP with mutual TLS", () => {
  const fixture = (name: string) => join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "tls", name);
  let t: TestServer;
  before(async () => {
    t = await startTestServer({
      http: { host: "127.0.0.1", port: 0 },
      tls: { cert: fixture("server.pem"), key: fixture("server.key"), clientCa: fixture("ca.pem") },
    });
  });
  after(() => t.close());

  const get = (options: https.RequestOptions) =>
    new Promise<number>((resolve, reject) => {
      https
        .get({ host: "localhost", port: t.server.httpPort, path: "/api/models", ...options }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
        .on("error", reject);
    });

  it("speaks only HTTPS, to clients with a certificate the client CA signed", async () => {
    const ca = readFileSync(fixture("ca.pem"));
    assert.equal(
      await get({ ca, cert: readFileSync(fixture("client.pem")), key: readFileSync(fixture("client.key")) }),
      200,
    );
    await assert.rejects(get({ ca }), "no client certificate");
    await assert.rejects(
      get({ ca, cert: readFileSync(fixture("rogue-client.pem")), key: readFileSync(fixture("rogue-client.key")) }),
      "a certificate another CA signed",
    );
    await assert.rejects(fetch(`http://127.0.0.1:${t.server.httpPort}/api/models`), "plaintext");
  });
});
