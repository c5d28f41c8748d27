/**
 * What the deployment tests run beside the server process (tools/harness's ServerProcess): a command
 * run to completion, as the container's HEALTHCHECK is, and one classification over the wire.
 */
import { spawnSync } from "node:child_process";
import type { ClassifyResponseMessage } from "../../../server/src/transport/ctmV1/ctmProtocol.ts";
import { createCtmClient } from "../../../tools/harness/index.ts";

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

/** ListModels, then Classify of one encoded image on the first model listed. */
export async function classifyImage(address: string, image: Buffer): Promise<ClassifyResponseMessage> {
  const client = createCtmClient(address);
  const within = () => ({ deadline: Date.now() + 30_000 });
  try {
    const { models } = await client.ListModels({}, within());
    const model = models[0]?.name;
    if (!model) throw new Error("ListModels returned no models");
    return await client.Classify({ model, image: { data: image } }, within());
  } finally {
    client.close();
  }
}
