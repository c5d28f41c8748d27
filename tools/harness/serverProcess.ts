/**
 * The server as a separate process, the way `npm start` or a container runs it: its JSON log lines are
 * collected so that a caller can wait for one and read what it says, and it is stopped with SIGTERM as
 * an orchestrator would. Benchmarks run the server this way so that the load generator's event loop is
 * not the server's.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { performance } from "node:perf_hooks";
import { freePort } from "./freePort.ts";

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

export interface ServerProcessOptions {
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** "inherit" passes the server's stderr through (a benchmark shows it); "pipe" keeps it in `output`. */
  stderr?: "pipe" | "inherit";
}

export class ServerProcess {
  readonly logs: LogLine[] = [];
  /** Everything on stdout (and stderr when piped), for failure messages. */
  output = "";
  /** Stdout alone: the log lines, and whatever else was printed there. */
  stdout = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private waiters: (() => void)[] = [];

  constructor(command: readonly string[], options: ServerProcessOptions) {
    const [file, ...args] = command as [string, ...string[]];
    this.child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", options.stderr ?? "pipe"],
    });
    let pending = "";
    this.child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      this.output += chunk;
      this.stdout += chunk;
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      for (const line of lines) {
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          // Not a log line (onnxruntime's own logger, a stray print): kept in `output` only.
        }
      }
      this.notify();
    });
    this.child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
      this.output += chunk;
    });
    this.exited = new Promise((resolve) => this.child.once("exit", (code, signal) => resolve({ code, signal })));
    this.exited.then(() => this.notify());
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** Resolves with the first log line that `matches`; rejects if the process exits or time runs out. */
  async waitForLog(matches: (line: LogLine) => boolean, timeoutMs: number): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    let exited: { code: number | null } | undefined;
    this.exited.then((status) => {
      exited = status;
    });
    for (;;) {
      const found = this.logs.find(matches);
      if (found) return found;
      if (exited)
        throw new Error(`the server exited (code ${exited.code}) before the expected log line:\n${this.output}`);
      if (Date.now() > deadline) throw new Error(`no such log line within ${timeoutMs} ms:\n${this.output}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  kill(signal: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  /** SIGTERM, then the process's exit. */
  async stop(): Promise<void> {
    this.kill("SIGTERM");
    await this.exited;
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** A server started by startServerProcess, serving. */
export interface StartedServer {
  port: number;
  metricsPort: number;
  pid: number;
  /** Milliseconds from spawning the process to its "serving" line (models loaded and warmed up). */
  startUpMs: number;
  process: ServerProcess;
  stop(): Promise<void>;
}

/**
 * Starts server/src/main.ts under `repo` (or `script`: another server that takes the same flags, or
 * ignores them, and logs {"msg": "serving", "port": P} on stdout the same way) on free ports, and
 * resolves once it serves. Its stderr passes through unless `stderr` is "pipe".
 */
export async function startServerProcess(
  repo: string,
  flags: string[],
  script = "server/src/main.ts",
  options: { stderr?: "pipe" | "inherit"; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<StartedServer> {
  const metrics = await freePort();
  const spawnedAt = performance.now();
  const server = new ServerProcess(
    [
      process.execPath,
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
    { cwd: repo, env: options.env, stderr: options.stderr ?? "inherit" },
  );
  // Never leave a server behind, whatever happens to the caller.
  const kill = () => server.kill("SIGKILL");
  process.once("exit", kill);
  try {
    const serving = await server.waitForLog(
      (line) => line.msg === "serving" && typeof line.port === "number",
      options.timeoutMs ?? Number.POSITIVE_INFINITY,
    );
    const metricsLine = server.logs.find((line) => line.msg === "metrics at /metrics" && typeof line.port === "number");
    return {
      port: serving.port as number,
      metricsPort: (metricsLine?.port as number | undefined) ?? 0,
      pid: server.pid,
      startUpMs: performance.now() - spawnedAt,
      process: server,
      stop: async () => {
        process.removeListener("exit", kill);
        await server.stop();
      },
    };
  } catch (error) {
    process.removeListener("exit", kill);
    server.kill("SIGKILL");
    throw error;
  }
}
