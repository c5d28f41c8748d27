/**
 * The health port (--health-port): grpc.health.v1 from a thread of its own. It mirrors the gRPC port's
 * statuses through loading, serving and draining, per model too, and reads NOT_SERVING everywhere
 * while the server's event loop is stuck, SERVING again once it runs.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { createServer } from "node:net";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { freePort } from "../../../tools/harness/index.ts";
import { MODEL_NAME, REPO, startTestServer } from "../../../tools/harness/testServer.ts";
import { parseConfig, type ServerConfig } from "../../src/config.ts";
import { serveHealthPort } from "../../src/transport/health/healthPort.ts";
import { modelHealthService } from "../../src/transport/health/modelHealth.ts";
import { ServingHealth } from "../../src/transport/health/servingHealth.ts";
import { checkHealth, healthClient, type ServingStatus, watchHealth } from "../support/healthClient.ts";

const execFileAsync = promisify(execFile);
const SERVICES = ["", "ctm.v1.CtmService", modelHealthService(MODEL_NAME)];
const statuses = async (port: number, services = SERVICES): Promise<ServingStatus[]> => {
  const client = healthClient(`127.0.0.1:${port}`);
  try {
    return await Promise.all(services.map((s) => checkHealth(client, s)));
  } finally {
    client.close();
  }
};

describe("the health port", () => {
  it("answers what the gRPC port answers: NOT_SERVING while loading, SERVING, NOT_SERVING while draining", async () => {
    let whileLoading: ServingStatus[] = [];
    const chosen = await freePort();
    const t = await startTestServer(
      { health: { host: "127.0.0.1", port: chosen, stallMs: 5000 } },
      {
        onListening: async () => {
          whileLoading = await statuses(chosen, SERVICES.slice(0, 2));
        },
      },
    );
    const healthPort = t.server.healthPort as number;
    try {
      assert.equal(healthPort, chosen);
      assert.deepEqual(whileLoading, ["NOT_SERVING", "NOT_SERVING"]);
      assert.deepEqual(await statuses(healthPort), ["SERVING", "SERVING", "SERVING"]);
      assert.deepEqual(await statuses(t.server.port), ["SERVING", "SERVING", "SERVING"]);
      const client = healthClient(`127.0.0.1:${healthPort}`);
      const unknown = await checkHealth(client, "no.such.Service").catch((error: grpc.ServiceError) => error.code);
      assert.equal(unknown, grpc.status.NOT_FOUND);

      // A watcher on the health port sees the drain.
      const { call: watch, seen, notServing } = watchHealth(client);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const stopping = t.server.shutdown(2000);
      await notServing;
      assert.deepEqual(seen, ["SERVING", "NOT_SERVING"]);
      watch.cancel();
      client.close();
      await stopping;
    } finally {
      await t.close();
    }
    // Shut down with the server: nothing listens on the health port afterwards.
    await new Promise<void>((resolve, reject) => {
      const probe = createServer();
      probe.once("error", reject);
      probe.listen(healthPort, "127.0.0.1", () => probe.close(() => resolve()));
    });
  });

  it("reads NOT_SERVING while the server's event loop is stuck, and SERVING once it runs again", async () => {
    const t = await startTestServer({ health: { host: "127.0.0.1", port: 0, stallMs: 300 } });
    try {
      // The prober runs in a process of its own: this one is about to stop running JavaScript.
      const prober = spawn(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `import * as grpc from "@grpc/grpc-js";
           import { service } from "grpc-health-check";
           const Health = grpc.makeGenericClientConstructor(service, "Health");
           const client = new Health("127.0.0.1:${t.server.healthPort}", grpc.credentials.createInsecure());
           const check = () => client.check({ service: "" }, (error, response) => {
             console.log(error ? "error " + error.code : response.status);
             setTimeout(check, 25);
           });
           check();
           setTimeout(() => process.exit(0), 4000);`,
        ],
        { cwd: REPO, stdio: ["ignore", "pipe", "inherit"] },
      );
      let out = "";
      prober.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
      const seen = () => out.split("\n").filter((line) => line !== "");
      while (!seen().includes("SERVING")) await new Promise((resolve) => setTimeout(resolve, 20));
      // Stuck, the way a runaway synchronous handler would leave it: 1.5 s, five times --health-stall-ms.
      const until = Date.now() + 1500;
      while (Date.now() < until) {
        /* spin */
      }
      const exited = new Promise((resolve) => prober.once("exit", resolve));
      await exited;
      const lines = seen();
      const firstStall = lines.indexOf("NOT_SERVING");
      assert.ok(firstStall > 0, `no NOT_SERVING while the loop was stuck: ${lines.join(", ")}`);
      assert.ok(lines.slice(firstStall).includes("SERVING"), `never SERVING again: ${lines.join(", ")}`);
      assert.ok(!lines.some((line) => line.startsWith("error")), `a probe failed: ${lines.join(", ")}`);
      // The gRPC port agrees once the loop runs: it was never told otherwise.
      assert.deepEqual(await statuses(t.server.port), ["SERVING", "SERVING", "SERVING"]);

      // The container's HEALTHCHECK asks the health port when CTM_HEALTH_PORT is set (CTM_PORT here
      // points at nothing, so only the health port can make it pass).
      const probe = await execFileAsync(process.execPath, ["--import", "tsx", "server/src/cli/healthProbe.ts"], {
        cwd: REPO,
        env: { ...process.env, CTM_HOST: "127.0.0.1", CTM_PORT: "1", CTM_HEALTH_PORT: String(t.server.healthPort) },
      });
      assert.equal(probe.stdout.trim(), `server at 127.0.0.1:${t.server.healthPort}: SERVING`);
    } finally {
      await t.close();
    }
  });

  it("keeps a status that changes while its thread is still starting", async () => {
    const health = new ServingHealth({ "": "NOT_SERVING" });
    const defaults = parseConfig([], {}) as ServerConfig;
    const starting = serveHealthPort(health, {
      host: "127.0.0.1",
      port: 0,
      stallMs: 5000,
      receiveTimeoutMs: defaults.receiveTimeoutMs,
      upkeep: { ...defaults, maxConcurrentStreams: defaults.limits.maxConcurrentStreams },
    });
    health.setStatus("", "SERVING"); // after the snapshot the thread starts from, before it listens
    const port = await starting;
    try {
      assert.deepEqual(await statuses(port.port, [""]), ["SERVING"]);
    } finally {
      await port.close();
    }
  });

  it("is configured by --health-port and must not share a port", () => {
    const config = parseConfig(["--health-port", "8081", "--health-stall-ms", "2000"], {});
    assert.deepEqual((config as ServerConfig).health, { host: "127.0.0.1", port: 8081, stallMs: 2000 });
    assert.equal((parseConfig([], {}) as ServerConfig).health, null);
    assert.throws(
      () => parseConfig(["--port", "50051", "--health-port", "50051"], {}),
      /--health-port \(50051\) must differ from --port \(50051\) on the same host/,
    );
    assert.throws(
      () => parseConfig(["--health-port", "8080"], {}),
      /--health-port \(8080\) must differ from the default of --http-port/,
    );
    assert.throws(
      () => parseConfig(["--health-stall-ms", "0"], {}),
      /--health-stall-ms must be an integer in \[1, 3600000\]/,
    );
  });
});
