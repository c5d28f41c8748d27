/**
 * The server as a separate process, the way a container or `npm start` runs it: its JSON log lines are
 * collected so that tests can wait for one and read what it says.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { createServer } from "node:net";
import * as grpc from "@grpc/grpc-js";
import {
  type ClassifyRequestMessage,
  type ClassifyResponseMessage,
  type ListModelsResponseMessage,
  loadProtocol,
} from "../../../server/src/transport/ctmV1/ctmProtocol.ts";

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

export class ServerProcess {
  readonly logs: LogLine[] = [];
  /** Everything on stdout and stderr, for failure messages. */
  output = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private waiters: (() => void)[] = [];

  constructor(command: readonly string[], options: { cwd: string; env: NodeJS.ProcessEnv }) {
    const [file, ...args] = command as [string, ...string[]];
    this.child = spawn(file, args, { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"] });
    let pending = "";
    this.child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      this.output += chunk;
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

  /** Resolves with the first log line that `matches`; rejects if the process exits or time runs out. */
  async waitForLog(matches: (line: LogLine) => boolean, timeoutMs: number): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.exited.then(() => {
      exited = true;
    });
    for (;;) {
      const found = this.logs.find(matches);
      if (found) return found;
      if (exited) throw new Error(`the server exited before the expected log line:\n${this.output}`);
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

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

/** A TCP port that was free a moment ago (the server binds it itself, as `docker run -p` would map it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/** Runs a command to completion (the container HEALTHCHECK) and returns its exit status and output. */
export function runToCompletion(
  command: readonly string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number },
): { status: number | null; output: string } {
  const [file, ...args] = command as [string, ...string[]];
  const result = spawnSync(file, args, {
    cwd: options.cwd,
    env: options.env,
    encoding: "utf8",
    timeout: options.timeoutMs,
  });
  return { status: result.status, output: `${result.stdout ?? ""}${result.stderr ?? ""}` };
}

type UnaryMethod = (
  request: unknown,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, value?: unknown) => void,
) => grpc.ClientUnaryCall;

/** ListModels, then Classify of one encoded image on the first model listed. */
export async function classifyImage(address: string, image: Buffer): Promise<ClassifyResponseMessage> {
  const { CtmClient } = loadProtocol();
  const client = new CtmClient(address, grpc.credentials.createInsecure());
  const unary = <T>(method: "ListModels" | "Classify", request: ClassifyRequestMessage | Record<string, never>) =>
    new Promise<T>((resolve, reject) => {
      const call = (client as unknown as Record<typeof method, UnaryMethod>)[method];
      call.call(client, request, { deadline: Date.now() + 30_000 }, (error, value) =>
        error ? reject(error) : resolve(value as T),
      );
    });
  try {
    const { models } = await unary<ListModelsResponseMessage>("ListModels", {});
    const model = models[0]?.name;
    if (!model) throw new Error("ListModels returned no models");
    return await unary<ClassifyResponseMessage>("Classify", { model, image: { data: image } });
  } finally {
    client.close();
  }
}
