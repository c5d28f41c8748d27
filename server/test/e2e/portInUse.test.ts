/**
 * A second `npm start` on a machine where the ports are taken: the server exits 1 with one line that
 * names the port, the flag that moves it and why, and no stack and no stray grpc-js line, whichever
 * port it is (gRPC, metrics, the playground, the health port). Run as `npm start` runs it: the entry
 * point in a process of its own, before any model loads.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer, type Server } from "node:net";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { REPO } from "../../../tools/harness/testServer.ts";

const execFileAsync = promisify(execFile);

/** Runs the server's entry point with `flags`; resolves with its exit code and output. */
async function start(flags: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(
      process.execPath,
      ["--import", "tsx", "server/src/main.ts", "--log-level", "info", ...flags],
      { cwd: REPO, timeout: 60_000 },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe("a port that is already taken", () => {
  let holder: Server;
  let taken: number;
  before(async () => {
    holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", () => resolve()));
    taken = (holder.address() as { port: number }).port;
  });
  after(() => new Promise<void>((resolve) => holder.close(() => resolve())));

  const cases: [string, string, string[]][] = [
    ["gRPC", "--port", ["--metrics-port", "0", "--http-port", "0"]],
    ["metrics", "--metrics-port", ["--port", "0", "--http-port", "0"]],
    ["the playground", "--http-port", ["--port", "0", "--metrics-port", "0"]],
    ["the health port", "--health-port", ["--port", "0", "--metrics-port", "0", "--http-port", "0"]],
  ];
  for (const [what, flag, others] of cases) {
    it(`names ${flag} in one line, without a stack`, { timeout: 90_000 }, async () => {
      const { code, stdout, stderr } = await start([flag, String(taken), ...others]);
      assert.equal(code, 1);
      const env = `CTM_${flag.slice(2).toUpperCase().replaceAll("-", "_")}`;
      const off = flag === "--port" ? "" : `; ${flag} 0 turns it off`;
      const line = `cannot serve ${what} on 127.0.0.1:${taken} (${flag}): the port is in use (another ctm-serve?); choose another ${flag} (or ${env}), or stop what holds it${off}`;
      assert.equal(stderr.trim(), `ctm-serve: ${line}`);
      const fatal = stdout
        .split("\n")
        .filter((text) => text.startsWith("{"))
        .map((text) => JSON.parse(text) as { level: number; msg: string; err?: unknown })
        .filter((entry) => entry.level === 60);
      assert.deepEqual(
        fatal.map((entry) => [entry.msg, entry.err]),
        [[line, undefined]],
      );
      // Before: a raw EADDRINUSE stack in the log line, after grpc-js's "No address added out of total 1 resolved".
      assert.doesNotMatch(stdout + stderr, /\n\s+at |No address added/);
    });
  }
});
