/**
 * The server under benchmark, in its own process exactly as `npm start` runs it, so that the load
 * generator's event loop is not the server's.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import { performance } from "node:perf_hooks";

export interface ServerProcess {
  port: number;
  metricsPort: number;
  pid: number;
  /** Milliseconds from spawning the process to its "serving" line (models loaded and warmed up). */
  startUpMs: number;
  stop(): Promise<void>;
}

/** A port that was free a moment ago (--metrics-port 0 would disable metrics, not pick a port). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Starts server/src/main.ts, or `script` when given: another server that takes the same flags (or
 * ignores them) and logs {"msg": "serving", "port": P} on stdout the same way (thinServer.ts).
 */
export async function startServerProcess(
  repo: string,
  flags: string[],
  script = "server/src/main.ts",
): Promise<ServerProcess> {
  const metrics = await freePort();
  const spawnedAt = performance.now();
  const child: ChildProcess = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      script,
      "--port",
      "0",
      "--metrics-port",
      String(metrics),
      "--http-port",
      "0",
      "--log-level",
      "info",
      ...flags,
    ],
    { cwd: repo, stdio: ["ignore", "pipe", "inherit"] },
  );
  // Never leave a server behind, whatever happens to the benchmark.
  const kill = () => child.kill("SIGKILL");
  process.once("exit", kill);
  let metricsPort = 0;
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === "metrics at /metrics" && entry.port) metricsPort = entry.port;
        if (entry.msg === "serving" && entry.port) resolve(entry.port);
      }
    });
    child.once("exit", (code) => reject(new Error(`server exited with code ${code} before serving`)));
  });
  return {
    port,
    metricsPort,
    pid: child.pid as number,
    startUpMs: performance.now() - spawnedAt,
    stop: () =>
      new Promise<void>((resolve) => {
        process.removeListener("exit", kill);
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
