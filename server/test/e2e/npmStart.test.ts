/**
 * `npm start` as a process supervisor (systemd, supervisord, PM2, a CI runner) sees it: a signal to the
 * npm process must reach the server, which drains and stops as it does when signalled itself; and a
 * start on a machine without CUDA writes no npm warning and no onnxruntime ERROR, only the server's
 * own line about the provider.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";
import { REPO } from "../../../tools/harness/testServer.ts";

interface Started {
  npm: ChildProcess;
  port: number;
  logs: { level: number; msg: string; signal?: string; provider?: string }[];
  stderr: () => string;
  /** npm's exit code, once its output is read too (or 5 s after it exited, if something still holds it). */
  exited: Promise<number | null>;
}

async function npmStart(): Promise<Started> {
  // Its own process group, so that whatever is left can be cleaned up in one go; signals in the tests
  // go to the npm process alone, as a supervisor's would.
  const npm = spawn("npm", ["start", "--", "--port", "0", "--metrics-port", "0", "--grace-ms", "2000"], {
    cwd: REPO,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, CTM_LOG_LEVEL: "info", NO_COLOR: "1" },
  });
  const logs: Started["logs"] = [];
  let stderr = "";
  npm.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8");
  });
  const closed = new Promise<void>((resolve) => npm.on("close", () => resolve()));
  const exited = new Promise<number | null>((resolve) => npm.on("exit", (code) => resolve(code))).then(async (code) => {
    // An orphaned server still holds the pipes open: then "close" never comes.
    await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    return code;
  });
  const port = await new Promise<number>((resolve, reject) => {
    let pending = "";
    npm.stdout?.on("data", (chunk: Buffer) => {
      pending += chunk.toString("utf8");
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        if (!line.startsWith("{")) continue; // npm's "> ctm-serve@0.1.0 start" banner
        const entry = JSON.parse(line) as Started["logs"][number] & { port?: number };
        logs.push(entry);
        if (entry.msg === "serving" && entry.port) resolve(entry.port);
      }
    });
    void exited.then((code) => reject(new Error(`npm start exited (${code}) before serving:\n${stderr}`)));
  });
  return { npm, port, logs, stderr: () => stderr, exited };
}

function stopGroup(started: Started | undefined): void {
  const pid = started?.npm.pid;
  if (!pid) return;
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // already gone
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  describe(`npm start, then ${signal} to the npm process`, () => {
    let started: Started | undefined;
    before(
      async () => {
        started = await npmStart();
      },
      { timeout: 120_000 },
    );
    after(() => stopGroup(started));

    if (signal === "SIGTERM") {
      it("starts without an npm warning or an onnxruntime ERROR on stderr", () => {
        const stderr = started?.stderr() ?? "";
        assert.doesNotMatch(stderr, /npm warn/i);
        assert.doesNotMatch(stderr, /\[E:onnxruntime/);
        assert.equal(stderr.trim(), "");
      });

      it("says in one log line why a machine without CUDA runs on the CPU", () => {
        const logs = started?.logs ?? [];
        const fallbacks = logs.filter((line) => line.msg.startsWith("provider auto: CUDA is unavailable"));
        const cuda = logs.some((line) => line.msg === "model loaded" && line.provider === "cuda");
        if (!cuda) {
          assert.equal(fallbacks.length, 1);
          assert.match(fallbacks[0]?.msg ?? "", /falling back to CPU: the CUDA provider is not installed \(no .+\)/);
        }
      });
    }

    // Bounded, so that a server that ignores the signal fails the test instead of hanging it.
    it(`drains and stops the server, which exits with npm`, { timeout: 60_000 }, async () => {
      const s = started as Started;
      assert.ok(await portOpen(s.port), "the server is listening before the signal");
      process.kill(s.npm.pid as number, signal);
      const code = await s.exited;
      assert.ok(
        s.logs.some((line) => line.msg === "signal received" && line.signal === signal),
        `the server logged the ${signal}`,
      );
      assert.ok(
        s.logs.some((line) => line.msg === "stopped"),
        "the server drained and stopped",
      );
      assert.equal(code, 0);
      assert.equal(await portOpen(s.port), false, "nothing listens on the port once npm has exited");
    });
  });
}
