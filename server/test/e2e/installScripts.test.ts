/**
 * The repository's .npmrc keeps every dependency's install script from running (onnxruntime-node's
 * downloads CUDA binaries from the internet), with npm 10 and 11 alike, and without the warning npm 11
 * prints on every command for a key it does not know. Installs here are offline: a local tarball whose
 * postinstall leaves a mark stands in for onnxruntime-node.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";
import { REPO } from "../../../tools/harness/testServer.ts";

const run = promisify(execFile);
// Without the npm_config_* variables of an enclosing `npm test`, which would override the .npmrc under test.
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));

describe("install scripts", () => {
  const dir = mkdtempSync(join(tmpdir(), "ctm-npmrc-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Installs a package whose postinstall writes a marker file; true when the script ran. */
  async function postinstallRuns(withRepoNpmrc: boolean): Promise<{ ran: boolean; stderr: string }> {
    const probe = join(dir, "probe");
    mkdirSync(probe, { recursive: true });
    writeFileSync(
      join(probe, "package.json"),
      JSON.stringify({
        name: "postinstall-probe",
        version: "1.0.0",
        scripts: { postinstall: "node -e \"require('fs').writeFileSync(process.env.PROBE_MARKER, 'ran')\"" },
      }),
    );
    const packed = readdirSync(dir).find((file) => file.endsWith(".tgz"));
    const tarball =
      packed ?? (await run("npm", ["pack", "--silent", "--pack-destination", dir], { cwd: probe, env })).stdout.trim();
    const project = mkdtempSync(join(dir, "project-"));
    writeFileSync(
      join(project, "package.json"),
      JSON.stringify({ name: "p", version: "1.0.0", dependencies: { "postinstall-probe": `file:../${tarball}` } }),
    );
    if (withRepoNpmrc) copyFileSync(join(REPO, ".npmrc"), join(project, ".npmrc"));
    const marker = join(project, "marker");
    const { stderr } = await run("npm", ["install", "--offline", "--no-audit", "--no-fund"], {
      cwd: project,
      env: { ...env, PROBE_MARKER: marker },
      encoding: "utf8",
    });
    return { ran: existsSync(marker), stderr };
  }

  it("a dependency's postinstall runs without the repository's .npmrc (the probe works)", async () => {
    assert.equal((await postinstallRuns(false)).ran, true);
  });

  it("runs no dependency's install script with the repository's .npmrc, and npm does not warn", async () => {
    const { ran, stderr } = await postinstallRuns(true);
    assert.equal(ran, false);
    assert.doesNotMatch(stderr, /npm warn/i);
  });

  it("npm reads the repository's configuration without a warning", async () => {
    const { stdout, stderr } = await run("npm", ["config", "get", "ignore-scripts"], {
      cwd: REPO,
      env,
      encoding: "utf8",
    });
    assert.equal(stdout.trim(), "true");
    assert.doesNotMatch(stderr, /npm warn/i);
  });
});
