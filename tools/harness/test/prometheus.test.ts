/**
 * The harness's /metrics parser, held to a real server's exposition (prom-client's text, every metric
 * the server registers; the server started as a child process by the harness itself) and to the
 * corners of the text format that the server's own text does not show.
 */
import assert from "node:assert/strict";
import { mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  bucketsOf,
  type CtmClient,
  createCtmClient,
  loadSamples,
  parsePrometheusText,
  type StartedServer,
  scrapeMetrics,
  seriesOf,
  startServerProcess,
  sumOf,
} from "../index.ts";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const MODEL = "mnist-ctm";

describe("parsePrometheusText on a real server's /metrics", () => {
  let server: StartedServer;
  let client: CtmClient;
  let metricsUrl: string;
  before(async () => {
    // A models folder with only the shipped digit model, so that nothing else loads.
    const models = mkdtempSync(join(tmpdir(), "ctm-harness-models-"));
    symlinkSync(join(REPO, "models", MODEL), join(models, MODEL));
    const flags = ["--models-dir", models, "--threads", "1", "--provider", "cpu"];
    server = await startServerProcess(REPO, flags, undefined, { stderr: "pipe", timeoutMs: 120_000 });
    metricsUrl = `http://127.0.0.1:${server.metricsPort}/metrics`;
    client = createCtmClient(`127.0.0.1:${server.port}`);
    const { version } = await client.GetModel({ name: MODEL });
    const [sample] = loadSamples(join(REPO, "models", MODEL, String(version))).samples;
    assert.ok(sample, "the model ships a sample");
    await client.Classify({ model: MODEL, ...sample.input });
    await client.Classify({ model: "no-such-model", ...sample.input }).catch(() => undefined);
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  it("reads every sample line of the text, with its labels", async () => {
    const text = await (await fetch(metricsUrl)).text();
    const samples = parsePrometheusText(text);
    const sampleLines = text.split("\n").filter((line) => line.trim() !== "" && !line.startsWith("#"));
    assert.equal(samples.length, sampleLines.length);
    assert.ok(samples.length > 50, `only ${samples.length} samples`);

    // One answered Classify and one refused, under their labels.
    assert.equal(sumOf(samples, "ctm_requests_total", { method: "Classify", status: "OK" }), 1);
    const refused = seriesOf(samples, "ctm_requests_total", { method: "Classify" }).filter(
      (s) => s.labels.status !== "OK",
    );
    assert.equal(refused.length, 1);
    assert.equal(refused[0]?.labels.status, "NOT_FOUND");
    assert.equal(sumOf(samples, "ctm_requests_total", { method: "Classify" }), 2);
    // A label that no series has matches nothing.
    assert.equal(sumOf(samples, "ctm_requests_total", { method: "Classify", status: "NO_SUCH" }), 0);

    // A histogram: cumulative buckets up to +Inf, which equals its _count.
    const buckets = bucketsOf(samples, "ctm_request_duration_seconds", { method: "Classify" });
    const bounds = [...buckets.keys()].sort((a, b) => a - b);
    assert.equal(bounds.at(-1), Number.POSITIVE_INFINITY);
    const counts = bounds.map((bound) => buckets.get(bound) as number);
    assert.deepEqual(
      counts,
      [...counts].sort((a, b) => a - b),
      "cumulative",
    );
    assert.equal(counts.at(-1), sumOf(samples, "ctm_request_duration_seconds_count", { method: "Classify" }));

    // A gauge without labels (prom-client's default metrics, prefixed ctm_).
    assert.ok(sumOf(samples, "ctm_process_resident_memory_bytes") > 0);
  });

  it("scrapes the endpoint itself, and names the URL when it cannot", async () => {
    assert.ok(sumOf(await scrapeMetrics(metricsUrl), "ctm_requests_total") >= 2);
    await assert.rejects(
      scrapeMetrics("http://127.0.0.1:1/metrics", 2000),
      /cannot read the server's metrics at http:\/\/127\.0\.0\.1:1\/metrics/,
    );
  });
});

describe("parsePrometheusText on the corners of the format", () => {
  it("unescapes label values, and reads timestamps, special values and spacing", () => {
    const samples = parsePrometheusText(
      [
        "# HELP x_total A counter.",
        "# TYPE x_total counter",
        'x_total{path="C:\\\\dir\\\\file",quote="say \\"hi\\"",nl="a\\nb",empty=""} 3 1700000000000',
        'x_bucket{le="+Inf"} +Inf',
        'x_bucket{le="0.5",} 1e3',
        "y -Inf",
        "z NaN",
        "   ",
      ].join("\n"),
    );
    assert.deepEqual(samples[0], {
      name: "x_total",
      labels: { path: "C:\\dir\\file", quote: 'say "hi"', nl: "a\nb", empty: "" },
      value: 3,
    });
    assert.equal(samples[1]?.value, Number.POSITIVE_INFINITY);
    assert.deepEqual(samples[2], { name: "x_bucket", labels: { le: "0.5" }, value: 1000 });
    assert.equal(samples[3]?.value, Number.NEGATIVE_INFINITY);
    assert.ok(Number.isNaN(samples[4]?.value));
    assert.equal(samples.length, 5);
  });

  it("refuses a line that is not a sample, naming it", () => {
    assert.throws(
      () => parsePrometheusText("x_total{a=1} 3"),
      /malformed labels in the metrics line "x_total\{a=1\} 3"/,
    );
    assert.throws(() => parsePrometheusText("not a sample"), /not a Prometheus sample line: "not a sample"/);
  });
});
