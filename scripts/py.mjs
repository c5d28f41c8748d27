#!/usr/bin/env node
// Runs the project's Python (the git-ignored .venv) with the given arguments, from the repository root
// (or, with --from-caller first, from npm's caller's directory), so that npm scripts work the same on
// every platform without activating anything.
//
// Signals are handed on, not absorbed: npm forwards SIGINT/SIGTERM to the script's process (this one,
// which the npm scripts `exec` into), and a Python child left behind would go on training on every core,
// reparented to PID 1. So each signal goes to the child, this process waits for the child to end, and
// then ends the way it did (its exit code, or the same signal), so that npm reports what happened.
import { spawn } from "node:child_process";
import { constants } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { pythonPath } from "./venv.mjs";

const FORWARDED = ["SIGINT", "SIGTERM", "SIGHUP"];

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// --from-caller: run in the directory npm was called from (INIT_CWD), so that the paths a user gives are
// theirs, as a command run by hand takes them; the ctm package's own defaults point into the repository
// wherever it runs (training/ctm/paths.py). Without it (tests, lint) Python runs from the repository root.
const fromCaller = process.argv[2] === "--from-caller";
const args = process.argv.slice(fromCaller ? 3 : 2);
const cwd = fromCaller ? process.env.INIT_CWD || process.cwd() : root;
// The checkout's own training/ comes first on the path, whatever checkout the venv's editable install
// was made from (a second worktree sharing one .venv would otherwise test the other tree's code).
const pythonPathEnv = [join(root, "training"), process.env.PYTHONPATH].filter(Boolean).join(delimiter);
const child = spawn(join(root, pythonPath), args, {
  cwd,
  stdio: "inherit",
  env: { ...process.env, PYTHONPATH: pythonPathEnv },
});

const forward = (signal) => {
  if (child.exitCode === null && child.signalCode === null) child.kill(signal);
};
for (const signal of FORWARDED) process.on(signal, forward);

child.on("error", (error) => {
  console.error(`cannot run ${pythonPath}: ${error.message} (run 'npm run bootstrap' first)`);
  process.exit(1);
});
child.on("exit", (code, signal) => {
  if (signal) {
    // Die of the same signal: without our handler, its default action ends this process.
    for (const s of FORWARDED) process.off(s, forward);
    process.kill(process.pid, signal);
    // Should it not end this process after all, exit as a shell reports a death by signal.
    setTimeout(() => process.exit(128 + (constants.signals[signal] ?? 0)), 1000);
    return;
  }
  process.exit(code ?? 1);
});
