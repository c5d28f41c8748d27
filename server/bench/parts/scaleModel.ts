/**
 * The random-weight model a `npm run bench:scale` preset measures: built and exported by
 * `python -m ctm.scale` once, then kept in a git-ignored cache folder (`.cache/scale/` by default),
 * since a paper-size export takes minutes. The export's own record (seconds, files, bytes) is kept
 * beside it, so a cached run still reports what exporting cost.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";

export interface ExportRecord {
  preset: string;
  family: string;
  folder: string;
  parameters: number;
  build_seconds: number;
  export_seconds: number;
  /** The whole `python -m ctm.scale` process: interpreter, imports, building the model, exporting. */
  wallSeconds: number;
  /** File name -> bytes, every file of the model folder. */
  files: Record<string, number>;
  architecture: Record<string, unknown>;
  /** When the export ran (ISO 8601) and whether this run reused it. */
  exportedAt: string;
  cached: boolean;
}

export interface ScaleModelOptions {
  cacheDir: string;
  externalData: boolean;
  /** golden.json cases (PyTorch per tick) to export with it: cheap for tiny presets only. */
  golden: number;
  rebuild: boolean;
}

/** The models folder (--models-dir) holding the preset's one model, and its export record. */
export async function scaleModel(
  repo: string,
  preset: string,
  options: ScaleModelOptions,
): Promise<{ modelsDir: string; record: ExportRecord }> {
  const modelsDir = join(options.cacheDir, options.externalData ? `${preset}-external-data` : preset);
  const folder = join(modelsDir, `scale-${preset}`, "1");
  const recordFile = join(modelsDir, "export.json");
  if (!options.rebuild && existsSync(recordFile) && existsSync(join(folder, "manifest.json"))) {
    const record = JSON.parse(readFileSync(recordFile, "utf8")) as ExportRecord;
    return { modelsDir, record: { ...record, cached: true } };
  }
  const args = ["scripts/py.mjs", "-m", "ctm.scale", "--preset", preset, "--out", folder, "--force"];
  if (options.externalData) args.push("--external-data");
  if (options.golden > 0) args.push("--golden", String(options.golden));
  const started = performance.now();
  const { stdout } = await promisify(execFile)(process.execPath, args, {
    cwd: repo,
    encoding: "utf8",
    maxBuffer: 1 << 24,
  });
  const last = stdout.trim().split("\n").pop() ?? "";
  const record: ExportRecord = {
    ...JSON.parse(last),
    wallSeconds: (performance.now() - started) / 1000,
    exportedAt: new Date().toISOString(),
    cached: false,
  };
  writeFileSync(recordFile, `${JSON.stringify(record, null, 2)}\n`);
  return { modelsDir, record };
}
