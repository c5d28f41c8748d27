#!/usr/bin/env node
// Runs the project's Python (the git-ignored .venv) with the given arguments, from the repository root,
// so that npm scripts work the same on every platform without activating anything.
import { spawnSync } from "node:child_process";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { pythonPath } from "./venv.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// The checkout's own training/ comes first on the path, whatever checkout the venv's editable install
// was made from (a second worktree sharing one .venv would otherwise test the other tree's code).
const pythonPathEnv = [join(root, "training"), process.env.PYTHONPATH].filter(Boolean).join(delimiter);
const result = spawnSync(join(root, pythonPath), process.argv.slice(2), {
  cwd: root,
  stdio: "inherit",
  env: { ...process.env, PYTHONPATH: pythonPathEnv },
});
if (result.error) {
  console.error(`cannot run ${pythonPath}: ${result.error.message} (run 'npm run bootstrap' first)`);
  process.exit(1);
}
process.exit(result.status ?? 1);
