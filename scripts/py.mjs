#!/usr/bin/env node
// Runs the project's Python (the git-ignored .venv) with the given arguments, from the repository root,
// so that npm scripts work the same on every platform without activating anything.
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { pythonPath } from "./venv.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const result = spawnSync(join(root, pythonPath), process.argv.slice(2), { cwd: root, stdio: "inherit" });
if (result.error) {
  console.error(`cannot run ${pythonPath}: ${result.error.message} (run 'npm run bootstrap' first)`);
  process.exit(1);
}
process.exit(result.status ?? 1);
