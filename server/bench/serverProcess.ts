/**
 * The server under benchmark, in its own process exactly as `npm start` runs it, so that the load
 * generator's event loop is not the server's.
 */
import { type ChildProcess, spawn } from "node:child_process";

export interface ServerProcess {
  port: number;
  stop(): Promise<void>;
}

export async function startServerProcess(repo: string, flags: string[]): Promise<ServerProcess> {
  const child: ChildProcess = spawn(
    process.execPath,
    ["--import", "tsx", "server/src/main.ts", "--port", "0", "--metrics-port", "0", "--log-level", "info", ...flags],
    { cwd: repo, stdio: ["ignore", "pipe", "inherit"] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    let buffered = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === "serving" && entry.port) resolve(entry.port);
      }
    });
    child.once("exit", (code) => reject(new Error(`server exited with code ${code} before serving`)));
  });
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
