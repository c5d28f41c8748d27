#!/usr/bin/env node
// Runs every *.test.ts file under server/, loadtest/, tools/ and deploy/ with Node's own test runner (through tsx).
// Node 20's runner does not discover .ts files by itself, so they are listed here.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

function find(dir) {
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === "node_modules") continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...find(path));
    else if (entry.name.endsWith(".test.ts")) found.push(relative(root, path));
  }
  return found;
}

// `--in <folder>` narrows the search to one of the folders (npm run test:deploy passes `--in deploy`).
const DIRS = ["server", "loadtest", "tools", "deploy"];
const argv = process.argv.slice(2);
const inAt = argv.indexOf("--in");
const only = inAt >= 0 ? argv[inAt + 1] : undefined;
const filter = inAt >= 0 ? argv.filter((_, i) => i !== inAt && i !== inAt + 1) : argv;
if (inAt >= 0 && !DIRS.includes(only)) {
  console.error(`run-ts-tests: --in takes one of ${DIRS.join(", ")}, got ${JSON.stringify(only ?? "")}`);
  process.exit(2);
}
if (filter.includes("--help") || filter.includes("-h")) {
  console.log(
    only === "deploy"
      ? `Usage: npm run test:deploy -- [substring ...]

Runs the deployment tests, every *.test.ts file under deploy/ (the Dockerfile built as a script, the
Kubernetes and KServe manifests, provider selection; docs/deploy.md says what each checks), or only
those whose path contains one of the substrings (e.g. npm run test:deploy -- kubernetes).`
      : `Usage: npm run test:ts -- [substring ...]

Runs every *.test.ts file under server/, loadtest/, tools/ and deploy/, or only those whose path contains one
of the substrings (e.g. npm run test:ts -- reflection cli.test).`,
  );
  process.exit(0);
}
const files = (only ? [only] : DIRS)
  .flatMap((dir) => {
    try {
      return find(join(root, dir));
    } catch {
      return [];
    }
  })
  .filter((file) => filter.length === 0 || filter.some((f) => file.includes(f)))
  .sort();
if (files.length === 0) {
  console.error("no *.test.ts files found");
  process.exit(1);
}
// Test files start servers that use both cores; running them one at a time keeps timings honest.
const result = spawnSync(
  process.execPath,
  ["--import", "tsx", "--test", "--test-concurrency=1", "--test-reporter=spec", ...files],
  { cwd: root, stdio: "inherit" },
);
process.exit(result.status ?? 1);
