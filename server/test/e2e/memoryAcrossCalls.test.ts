/**
 * Memory across concurrent calls: many small gzip requests that each inflate to megabytes, sent at
 * once to a server in a process of its own (so that its peak resident memory, VmHWM, is its alone),
 * with health checked while they land. The tensor length read before decoding, the in-flight bound
 * and the worst case of each inflation taken from that bound while it runs (requestArrival.ts) keep
 * the peak down; without them (the old defaults, 16 MiB messages and no bound) this flood took the peak
 * past 1 GiB, and with 8 MiB messages but inflation uncounted it took 523 MiB
 * (docs/reliability.md, "Network attacks").
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { status } from "@grpc/grpc-js";
import { classifyRequestBytes, gzipMessage, rawCall, ServerProcess } from "../../../tools/harness/index.ts";
import { percentile } from "../../../tools/harness/statistics.ts";
import { MODEL_NAME, REPO, testConfig } from "../../../tools/harness/testServer.ts";
import { checkHealth, healthClient } from "../support/healthClient.ts";

/** The stated bound on how far the flood may raise the server's peak resident memory. */
const PEAK_GROWTH_BOUND_MIB = 300;
const CALLS = 96;
const CLASSIFY = "/ctm.v1.CtmService/Classify";

function peakRssMiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmHWM:"));
  return Number(/(\d+)/.exec(line ?? "")?.[1]) / 1024;
}

/** Starts `npm start`'s entry point on a free port; resolves with the process and its port once serving. */
async function spawnServer(extra: string[]): Promise<{ child: ServerProcess; port: number }> {
  const child = new ServerProcess(
    [
      process.execPath,
      "--import",
      "tsx",
      "server/src/main.ts",
      "--port",
      "0",
      "--metrics-port",
      "0",
      "--http-port",
      "0",
      "--threads",
      "1",
      ...extra,
    ],
    { cwd: REPO, env: { ...process.env, CTM_MODELS_DIR: testConfig().modelsDir, CTM_PROVIDER: "cpu" } },
  );
  await child.waitForLog((line) => line.msg === "serving", 120_000);
  const listening = child.logs.find((line) => line.msg === "gRPC listening; loading models");
  return { child, port: (listening?.port as number | undefined) ?? 0 };
}

describe("memory across concurrent calls", () => {
  let server: { child: ServerProcess; port: number };
  // CTM_TEST_OLD_LIMITS=1 runs the same flood against the old defaults, to see the test fail without the fix.
  const old = process.env.CTM_TEST_OLD_LIMITS === "1";

  before(async () => {
    server = await spawnServer(
      old
        ? ["--max-message-bytes", "16777216", "--max-tensor-values", "4194304", "--max-inflight-bytes", "68719476736"]
        : [],
    );
  });
  after(() => {
    server?.child.kill("SIGKILL");
  });

  it(`${CALLS} concurrent gzip requests that inflate to 1-16 MiB each: the peak stays under ${PEAK_GROWTH_BOUND_MIB} MiB of growth and health answers`, async (t) => {
    const pid = server.child.pid;
    const address = `127.0.0.1:${server.port}`;
    const health = healthClient(address);
    const session = http2.connect(`http://${address}`);
    try {
      assert.equal(await checkHealth(health), "SERVING");
      const before = peakRssMiB(pid);
      // Each compresses to a few KB: the attacker's cost is nothing, the server's is the inflated size.
      const kinds = [
        classifyRequestBytes(MODEL_NAME, { shape: [4_000_000], values: 4_000_000 }), // 16 MB of floats
        classifyRequestBytes(MODEL_NAME, { image: Buffer.alloc(15 * 2 ** 20) }), // within the old 16 MiB
        classifyRequestBytes(MODEL_NAME, { image: Buffer.alloc(2 ** 20 - 4096) }), // within --max-image-bytes
      ].map(gzipMessage);
      const started = performance.now();
      let landed = false;
      const flood = Promise.all(
        Array.from({ length: CALLS }, (_, i) => rawCall(session, CLASSIFY, kinds[i % kinds.length] as Buffer)),
      ).finally(() => {
        landed = true;
      });
      // Health is asked again and again while the flood lands; each answer gets a generous deadline,
      // and the times are reported, not asserted.
      const during: string[] = [];
      const waits: number[] = [];
      do {
        const asked = performance.now();
        during.push(
          await Promise.race([
            checkHealth(health),
            new Promise<string>((resolve) => setTimeout(() => resolve("no answer within 20 s"), 20_000)),
          ]),
        );
        waits.push(performance.now() - asked);
        await new Promise((resolve) => setTimeout(resolve, 20));
      } while (!landed);
      const results = await flood;
      const floodSeconds = (performance.now() - started) / 1000;
      const grown = peakRssMiB(pid) - before;
      const tally = new Map<number, number>();
      for (const r of results) tally.set(r.status, (tally.get(r.status) ?? 0) + 1);
      t.diagnostic(
        `peak RSS ${before.toFixed(0)} -> ${(before + grown).toFixed(0)} MiB; statuses ${JSON.stringify([...tally])}`,
      );
      t.diagnostic(
        `flood answered in ${floodSeconds.toFixed(1)} s; ${waits.length} health checks during it, p50 ${percentile(waits, 50).toFixed(1)} ms, max ${percentile(waits, 100).toFixed(1)} ms`,
      );
      assert.deepEqual(new Set(during), new Set(["SERVING"]), "health during the flood");
      assert.ok(grown < PEAK_GROWTH_BOUND_MIB, `peak resident memory grew by ${grown.toFixed(0)} MiB`);
      // Every call got an answer, none of them INTERNAL: the size limits and the bound said no, by name.
      const codes = results.map((r) => r.status);
      assert.ok(
        codes.every((c) => c === status.RESOURCE_EXHAUSTED || c === status.INVALID_ARGUMENT),
        `statuses: ${[...new Set(codes)]}`,
      );
      const named = results.filter((r) =>
        /--max-(inflight|image)-bytes|--max-tensor-values|larger than/.test(r.details),
      );
      assert.ok(named.length > 0, "refusals name their bound");
      assert.equal(await checkHealth(health), "SERVING", "health after the flood");
    } finally {
      session.close();
      health.close();
    }
  });
});
