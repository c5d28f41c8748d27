/**
 * Starts a worker thread from a module next to this one, whether the server runs as TypeScript
 * (through tsx) or compiled. Node 20 does not pass tsx's loader on to workers, so a .ts entry is
 * reached through a small bootstrap that registers tsx inside the worker first.
 */
import { Worker } from "node:worker_threads";

export function spawnWorker(entry: URL, workerData: unknown): Worker {
  if (!entry.pathname.endsWith(".ts")) return new Worker(entry, { workerData });
  const tsx = import.meta.resolve("tsx/esm/api");
  const bootstrap = `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData });
}
