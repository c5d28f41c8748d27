/**
 * `npm run soak` end to end, for a few seconds: against a server it starts itself it passes, reports
 * intervals and the server's memory, and writes its result; against a server that refuses good
 * requests (a queue of zero) it fails with a non-zero exit.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { REPO, startTestServer } from "../../tools/harness/testServer.ts";
import { EXPECTED, type Kind } from "../src/soakMix.ts";

function runSoak(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "loadtest/src/soak.ts", ...args], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

interface SoakResult {
  ok: boolean;
  completed: number;
  byKind: Record<Kind, Record<string, number>>;
  intervals: { atS: number; memory: { rssBytes: number } | null }[];
  memory: {
    baselineRssBytes: number | null;
    endRssBytes: number | null;
    growthPct: number | null;
    series: { atS: number; rssBytes: number }[];
  };
  unexpectedCount: number;
  unexpected: { kind: Kind; code: string }[];
}

describe("npm run soak", () => {
  it("holds a mixed load on a server it starts, reports, and passes", async () => {
    const out = join(mkdtempSync(join(tmpdir(), "ctm-soak-")), "soak.json");
    const { code, stdout } = await runSoak([
      "--minutes",
      "0.1",
      "--rate",
      "30",
      "--report-s",
      "2",
      "--sample-s",
      "1",
      "--out",
      out,
    ]);
    assert.equal(code, 0, stdout);
    assert.match(
      stdout,
      /^\[\s+\d+ s\] [\d.]+ rps \| .*OK \d+.* \| good p50\/p99 [\d.]+\/[\d.]+ ms \| rss [\d.]+ MiB/m,
    );
    assert.match(
      stdout,
      /^server RSS, median of \d+ s windows: [\d.]+ MiB after warm-up \([\d-]+ s\) -> [\d.]+ MiB at the end \(from \d+ s\): [+-][\d.]+%/m,
    );
    assert.match(stdout, /^PASS; wrote /m);

    const result = JSON.parse(readFileSync(out, "utf8")) as SoakResult;
    assert.equal(result.ok, true);
    assert.equal(result.unexpectedCount, 0);
    assert.ok(result.intervals.length >= 2, "reports while it runs");
    assert.ok(
      result.intervals.every((i) => i.memory && i.memory.rssBytes > 0),
      "every report has the server's RSS",
    );
    assert.ok((result.memory.baselineRssBytes ?? 0) > 0 && (result.memory.endRssBytes ?? 0) > 0);
    assert.equal(typeof result.memory.growthPct, "number");
    assert.ok(result.memory.series.length >= 4, "samples the server's memory through the run");
    // The good requests all answered, and every kind ended only as it may.
    assert.ok((result.byKind["good-unary"].OK ?? 0) > 0 && (result.byKind["good-stream"].OK ?? 0) > 0);
    for (const [kind, codes] of Object.entries(result.byKind) as [Kind, Record<string, number>][]) {
      for (const status of Object.keys(codes)) assert.ok(EXPECTED[kind].includes(status), `${kind} ended ${status}`);
    }
    const sent = Object.values(result.byKind).reduce(
      (n, codes) => n + Object.values(codes).reduce((a, b) => a + b, 0),
      0,
    );
    assert.equal(sent, result.completed);
  });

  it("soaks a server behind mutual TLS and a bearer token", async () => {
    const tls = (name: string) => join(REPO, "server", "test", "fixtures", "tls", name);
    const token = "soak-token-0123456789abcdef";
    const t = await startTestServer({
      tls: { cert: tls("server.pem"), key: tls("server.key"), clientCa: tls("ca.pem") },
      auth: { tokens: [token], tokensFile: null },
    });
    try {
      const out = join(mkdtempSync(join(tmpdir(), "ctm-soak-")), "soak.json");
      const secured = ["--address", `localhost:${t.server.port}`, "--tls-ca", tls("ca.pem")];
      secured.push("--tls-cert", tls("client.pem"), "--tls-key", tls("client.key"));
      const run = ["--minutes", "0.05", "--rate", "20", "--report-s", "1", "--out", out];
      const { code, stdout } = await runSoak([...secured, ...run, "--token", token]);
      assert.equal(code, 0, stdout);
      const result = JSON.parse(readFileSync(out, "utf8")) as SoakResult;
      assert.equal(result.unexpectedCount, 0);
      assert.ok((result.byKind["good-unary"].OK ?? 0) + (result.byKind["good-stream"].OK ?? 0) > 0);
      // Without the token the server lets nothing in, and the soak says so and fails.
      const refused = await runSoak([...secured, ...run]);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /^soak: 16 UNAUTHENTICATED: /m);
      assert.doesNotMatch(refused.stderr, /\n\s+at /, "a refusal is the server's answer, not a crash: no stack");
    } finally {
      await t.close();
    }
  });

  it("fails when good requests are refused", async () => {
    // One batch slot and no queue: at this rate most good requests get RESOURCE_EXHAUSTED.
    const t = await startTestServer({ maxBatch: 1, maxQueue: 0 });
    try {
      const out = join(mkdtempSync(join(tmpdir(), "ctm-soak-")), "soak.json");
      const { code, stdout } = await runSoak([
        "--minutes",
        "0.05",
        "--rate",
        "100",
        "--report-s",
        "1",
        "--address",
        t.address,
        "--metrics-url",
        `http://127.0.0.1:${t.server.metricsPort}/metrics`,
        "--out",
        out,
      ]);
      assert.equal(code, 1, stdout);
      assert.match(stdout, /^UNEXPECTED good-(unary|stream): RESOURCE_EXHAUSTED model mnist-ctm is at capacity/m);
      assert.match(stdout, /^FAIL; wrote /m);
      const result = JSON.parse(readFileSync(out, "utf8")) as SoakResult;
      assert.equal(result.ok, false);
      assert.ok(result.unexpectedCount > 0);
      assert.ok(result.unexpected.every((o) => !EXPECTED[o.kind].includes(o.code)));
    } finally {
      await t.close();
    }
  });
});
