/**
 * What renders a kustomization here: kubectl's built-in kustomize, or a standalone `kustomize`.
 * `.ci/run` installs the standalone one with `go install` where neither is on the PATH, so the
 * rendering tests run in CI; elsewhere they skip and say how to get one.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";

function findRenderer(): string[] | undefined {
  for (const command of [
    ["kubectl", "kustomize"],
    ["kustomize", "build"],
  ]) {
    const probe = spawnSync(command[0] as string, command[0] === "kubectl" ? ["version", "--client"] : ["version"], {
      encoding: "utf8",
    });
    if (probe.status === 0) return command;
  }
  return undefined;
}

export const renderer = findRenderer();

/** The `skip` option of a test that renders: false, or why it cannot run here. */
export const skipWithoutRenderer: false | string = renderer
  ? false
  : "local-only: neither kubectl nor kustomize is installed (go install sigs.k8s.io/kustomize/kustomize/v5@v5.7.1, as .ci/run does, or Debian's kubectl)";

/** The YAML a kustomization folder renders to; fails the test with the renderer's message. */
export function kustomize(folder: string): string {
  assert.ok(renderer, "no kustomize renderer");
  const [command, ...args] = renderer;
  const result = spawnSync(command as string, [...args, folder], { encoding: "utf8" });
  assert.equal(result.status, 0, `${renderer.join(" ")} ${folder}: ${result.stderr}`);
  return result.stdout;
}
