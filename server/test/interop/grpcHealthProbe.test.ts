/**
 * grpc-health-probe, the probe Kubernetes users put in their exec probes (before gRPC probes existed,
 * and where the cluster is older), against the gRPC port and the health port: it reads SERVING for the
 * server and for ctm.v1.CtmService, fails an unknown service as an RPC failure, and reads NOT_SERVING
 * on the health port while the server's event loop is stuck (what a liveness probe is for). `.ci/run`
 * installs it with `go install` into ~/go/bin.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { freePort } from "../../../tools/harness/index.ts";
import { startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";

const PROBE = join(homedir(), "go", "bin", "grpc-health-probe");
/** How long the event loop may stall before the health port reads NOT_SERVING. */
const STALL_MS = 500;

/** The probe's exit code and what it printed; its codes: 0 SERVING, 2 no connection, 3 RPC failed, 4 not SERVING. */
function probe(...args: string[]): Promise<{ code: number; output: string }> {
  return probeAfter(0, ...args);
}

/** The probe, started `delayS` seconds from now by a shell (so that it runs while this thread is busy). */
function probeAfter(delayS: number, ...args: string[]): Promise<{ code: number; output: string }> {
  const argv = [PROBE, "-connect-timeout=5s", "-rpc-timeout=5s", ...args];
  return new Promise((resolve) => {
    execFile(
      "sh",
      ["-c", `sleep ${delayS} && exec "$@"`, "sh", ...argv],
      { encoding: "utf8" },
      (error, stdout, stderr) => {
        const code = error ? Number(error.code) : 0;
        resolve({ code, output: `${stdout}${stderr}`.trim() });
      },
    );
  });
}

describe("grpc-health-probe", { skip: !existsSync(PROBE) && `${PROBE} is not installed` }, () => {
  let t: TestServer;
  let healthPort: number;
  before(async () => {
    const chosen = await freePort();
    t = await startTestServer({ health: { host: "127.0.0.1", port: chosen, stallMs: STALL_MS } });
    healthPort = t.server.healthPort as number;
  });
  after(() => t?.close());

  it("reads SERVING for the server and for ctm.v1.CtmService, on both ports", async () => {
    for (const port of [t.server.port, healthPort]) {
      for (const service of ["", "ctm.v1.CtmService"]) {
        const { code, output } = await probe(`-addr=127.0.0.1:${port}`, `-service=${service}`);
        assert.equal(code, 0, `port ${port}, service "${service}": ${output}`);
        assert.match(output, /status: SERVING/);
      }
    }
  });

  it("fails an unknown service as an RPC failure (NOT_FOUND), not as unhealthy", async () => {
    const { code, output } = await probe(`-addr=${t.address}`, "-service=no.such.Service");
    assert.equal(code, 3, output);
    assert.match(output, /NotFound/);
  });

  it("says where nothing listens: no connection", async () => {
    const { code, output } = await probe(`-addr=127.0.0.1:${await freePort()}`, "-connect-timeout=1s");
    assert.equal(code, 2, output);
  });

  it("reads NOT_SERVING on the health port while the event loop is stuck, SERVING once it runs", async () => {
    // The probe starts 1 s from now, while this thread (the server's event loop) spins for 3 s.
    const stuck = probeAfter(1, `-addr=127.0.0.1:${healthPort}`);
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      // the server's loop is this loop: nothing of it runs
    }
    const { code, output } = await stuck;
    assert.equal(code, 4, output);
    assert.match(output, /NOT_SERVING/);
    await new Promise((resolve) => setTimeout(resolve, STALL_MS));
    const again = await probe(`-addr=127.0.0.1:${healthPort}`);
    assert.equal(again.code, 0, again.output);
  });
});
