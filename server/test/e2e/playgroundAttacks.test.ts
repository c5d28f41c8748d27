/**
 * The playground's HTTP port under the attacks an outside run found holding it open or serving what it
 * should not: bodies read outside the in-flight bound and without a time limit, uploads abandoned
 * midway counted as server errors, a labels file re-read on every request, requests addressed to
 * another name (DNS rebinding) or sent by another origin, framing by other pages, and a number too
 * large for JSON's doubles reported as "null".
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  type GoldenCase,
  MODEL_NAME,
  metricValue,
  modelDir,
  readModelJson,
  startTestServer,
  type TestServer,
  testConfig,
} from "../../../tools/harness/testServer.ts";

const golden = readModelJson<{ cases: GoldenCase[] }>("golden.json").cases[0] as GoldenCase;
const TIMEOUT_MS = 800;

interface RawReply {
  /** The status line's code, 0 if none came. */
  status: number;
  body: string;
  /** The server closed the connection. */
  closed: boolean;
}

/**
 * A POST /api/classify over a plain socket: `head` extra headers, then `sent` of the body, and nothing
 * more until the server answers or closes (or `limitMs` passes).
 */
function rawPost(port: number, head: string, sent: string, limitMs = 6000): Promise<RawReply> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => {
      socket.write(`POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${head}\r\n${sent}`);
    });
    let text = "";
    const done = (closed: boolean) => {
      clearTimeout(limit);
      socket.destroy();
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, body: text.slice(text.indexOf("\r\n\r\n") + 4), closed });
    };
    const limit = setTimeout(() => done(false), limitMs);
    socket.on("data", (chunk: Buffer) => (text += chunk.toString()));
    socket.on("error", () => {});
    socket.on("close", () => done(true));
  });
}

const tensorBody = JSON.stringify({ model: MODEL_NAME, tensor: { shape: golden.input_shape, values: golden.input } });

describe("playground request bodies", () => {
  let t: TestServer;
  let port: number;
  before(async () => {
    t = await startTestServer({
      http: { host: "127.0.0.1", port: 0 },
      receiveTimeoutMs: TIMEOUT_MS,
      limits: { ...testConfig().limits, maxInflightBytes: 1_000_000 },
    });
    port = t.server.httpPort as number;
  });
  after(() => t.close());

  it("takes a body's declared length from --max-inflight-bytes before reading it, and ends one that trickles", async () => {
    // 990 KB declared, 10 bytes sent: the bound is taken at once ...
    const slow = rawPost(port, "Content-Length: 990000\r\n", '{"model": ');
    await new Promise((resolve) => setTimeout(resolve, 200));
    // ... so a whole request that would pass it is refused at once (it used to be read and served).
    const refused = await fetch(`http://127.0.0.1:${port}/api/classify`, { method: "POST", body: tensorBody });
    assert.equal(refused.status, 429);
    assert.deepEqual(await refused.json(), {
      code: "RESOURCE_EXHAUSTED",
      message: `the server holds 990000 bytes of requests in progress; this ${Buffer.byteLength(tensorBody)}-byte request would pass the 1000000 it allows (--max-inflight-bytes); retry shortly`,
    });
    // The trickle gets 408 after --receive-timeout-ms and its connection is closed (Node's own limit
    // was 300 s).
    const ended = await slow;
    assert.equal(ended.status, 408);
    assert.deepEqual(JSON.parse(ended.body), {
      code: "DEADLINE_EXCEEDED",
      message: `the request body did not arrive within ${TIMEOUT_MS} ms (--receive-timeout-ms): 10 bytes came`,
    });
    assert.ok(ended.closed, "the connection was closed");
    // A chunked body is counted and timed as it comes, too.
    const chunked = await rawPost(port, "Transfer-Encoding: chunked\r\n", 'a\r\n{"model": \r\n');
    assert.equal(chunked.status, 408);
    assert.ok(chunked.closed);
    // Everything was given back.
    const served = await fetch(`http://127.0.0.1:${port}/api/classify`, { method: "POST", body: tensorBody });
    assert.equal(served.status, 200);
    await served.text();
  });

  it("counts an upload its client abandons as CANCELLED, not as a server error", async () => {
    const errorsBefore = t.logs.filter((line) => line.level >= 50).length;
    await new Promise<void>((resolve) => {
      const socket = net.connect(port, "127.0.0.1", () => {
        socket.write(`POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n{"model": "`);
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 100);
      });
      socket.on("error", () => {});
    });
    const count = async (status: string) =>
      metricValue(await t.metrics(), "ctm_requests_total", { method: "HttpClassifyStream", status });
    for (let polls = 0; polls < 200 && (await count("CANCELLED")) === 0; polls++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await count("CANCELLED"), 1);
    assert.equal(await count("INTERNAL"), 0);
    assert.equal(t.logs.filter((line) => line.level >= 50).length, errorsBefore, "nothing was logged as an error");
  });

  it("names a number too large for JSON's doubles as such, not as null", async () => {
    const response = await fetch(`http://127.0.0.1:${port}/api/classify`, {
      method: "POST",
      body: `{"model": "${MODEL_NAME}", "version": 1e400}`,
    });
    assert.equal(response.status, 400);
    assert.deepEqual(await response.json(), {
      code: "INVALID_ARGUMENT",
      message:
        "version must be an integer in [0, 4294967295], got a number too large to represent (it reads as Infinity)",
    });
  });
});

describe("playground addresses, origins and framing", () => {
  let t: TestServer;
  let port: number;
  let labels: string;
  before(async () => {
    // A copy of the shipped model, so that its labels file can be changed under the running server.
    const models = mkdtempSync(join(tmpdir(), "ctm-playground-attacks-"));
    cpSync(modelDir(), join(models, MODEL_NAME, "1"), { recursive: true });
    labels = join(models, MODEL_NAME, "1", "samples", "labels.json");
    t = await startTestServer({ modelsDir: models, http: { host: "127.0.0.1", port: 0 } });
    port = t.server.httpPort as number;
  });
  after(() => t.close());

  const get = (path: string, headers: Record<string, string>) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port, path, headers }, (res) => {
          let body = "";
          res.on("data", (chunk: Buffer) => (body += chunk.toString()));
          res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        })
        .on("error", reject);
    });

  it("reads a model's labels file once, not on every request", async () => {
    const first = (await (await fetch(`http://127.0.0.1:${port}/api/models`)).json()) as {
      models: { samples: unknown[] }[];
    };
    const listed = first.models[0]?.samples.length ?? 0;
    assert.ok(listed > 0);
    writeFileSync(labels, "not json");
    const second = (await (await fetch(`http://127.0.0.1:${port}/api/models`)).json()) as typeof first;
    assert.equal(second.models[0]?.samples.length, listed);
  });

  it("answers only requests addressed to its loopback address, and API calls only from its own page", async () => {
    // A page on evil.example whose name now resolves to 127.0.0.1 (DNS rebinding) reaches this port
    // with its own name in Host.
    const rebound = await get("/api/models", { host: `evil.example:${port}` });
    assert.equal(rebound.status, 421);
    assert.match(
      JSON.parse(rebound.body).message,
      /answers only requests addressed to it .* not to "evil\.example:\d+"/,
    );
    assert.equal((await get("/", { host: "evil.example" })).status, 421);
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, "[::1]"])
      assert.equal((await get("/api/models", { host })).status, 200, host);
    // Another origin's page posting to this one (its browser says where it came from).
    const foreign = await fetch(`http://127.0.0.1:${port}/api/classify`, {
      method: "POST",
      headers: { origin: "http://evil.example" },
      body: tensorBody,
    });
    assert.equal(foreign.status, 403);
    assert.deepEqual(await foreign.json(), {
      code: "PERMISSION_DENIED",
      message: 'the API answers only the playground\'s own page; this request came from "http://evil.example"',
    });
    const own = await fetch(`http://127.0.0.1:${port}/api/classify`, {
      method: "POST",
      headers: { origin: `http://127.0.0.1:${port}` },
      body: tensorBody,
    });
    assert.equal(own.status, 200);
    await own.text();
  });

  it("may not be framed by another page", async () => {
    const page = await get("/", { host: `127.0.0.1:${port}` });
    assert.equal(page.status, 200);
    assert.match(String(page.headers["content-security-policy"]), /frame-ancestors 'none'/);
    assert.equal(page.headers["x-frame-options"], "DENY");
  });
});
