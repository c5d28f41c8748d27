#!/usr/bin/env node
// Installs what a fresh clone is missing, so that `npm start` and `npm test` are the only commands a
// newcomer needs. Plain Node with no dependencies: it runs before node_modules exists.
//
//   node scripts/bootstrap.mjs            node packages and the Python environment
//   node scripts/bootstrap.mjs --node     node packages only (what `npm start` needs)
//   node scripts/bootstrap.mjs --python   the Python environment only (training, export)
//
// Each part is skipped when a stamp file records that the current lock/requirements file was already
// installed, so a second run costs a few milliseconds.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { pythonPath, venvDir } from "./venv.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = new Set(process.argv.slice(2));
const known = new Set(["--node", "--python", "--help", "-h"]);
const unknown = [...args].filter((arg) => !known.has(arg));
if (args.has("--help") || args.has("-h") || unknown.length > 0) {
  if (unknown.length > 0) console.error(`bootstrap: unknown argument ${unknown.join(" ")}\n`);
  (unknown.length > 0 ? console.error : console.log)(`Usage: npm run bootstrap -- [--node | --python]

Installs what a fresh clone is missing (each part only when its lock or requirements file changed):
  (no option)   node packages (npm ci) and the Python environment in .venv
  --node        node packages only (what npm start needs)
  --python      the Python environment only (training, export)`);
  process.exit(unknown.length > 0 ? 2 : 0);
}
const all = !args.has("--node") && !args.has("--python");

function digest(...files) {
  const hash = createHash("sha256");
  for (const file of files) hash.update(readFileSync(join(root, file)));
  return hash.digest("hex");
}

function run(command, argv) {
  console.error(`[bootstrap] ${command} ${argv.join(" ")}`);
  const result = spawnSync(command, argv, { cwd: root, stdio: "inherit" });
  if (result.status !== 0) {
    console.error(`[bootstrap] '${command} ${argv.join(" ")}' failed with exit code ${result.status}`);
    process.exit(result.status ?? 1);
  }
}

function ensure(stampFile, wanted, install) {
  const stamp = join(root, stampFile);
  if (existsSync(stamp) && readFileSync(stamp, "utf8") === wanted) return;
  install();
  writeFileSync(stamp, wanted);
}

if (all || args.has("--node")) {
  ensure("node_modules/.ctm-serve-stamp", digest("package-lock.json"), () => {
    run("npm", ["ci", "--no-audit", "--no-fund"]);
  });
}

if (all || args.has("--python")) {
  const requirements = "training/requirements.txt";
  ensure(join(venvDir, ".ctm-serve-stamp"), digest(requirements, "training/pyproject.toml"), () => {
    if (!existsSync(join(root, pythonPath))) run("python3", ["-m", "venv", venvDir]);
    run(pythonPath, ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", requirements]);
    run(pythonPath, ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", "-e", "training"]);
  });
}
