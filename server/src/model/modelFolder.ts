/**
 * A model is a folder that describes itself: `<models>/<name>/<version>/manifest.json` beside its ONNX
 * graphs, calibration and fixtures (Triton's model-repository layout). Which versions of a model are
 * served is the version policy's choice (engine/versionPolicy.ts); this file finds them on disk.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { type Calibration, newestCalibrationFile, parseCalibration } from "./calibration.ts";
import { ModelFolderError } from "./jsonReader.ts";
import { MANIFEST_FILE, type Manifest, parseManifest } from "./manifest.ts";

export { ModelFolderError } from "./jsonReader.ts";

/** Everything the server knows about one model version, with absolute paths. */
export interface ModelDefinition {
  dir: string;
  manifest: Manifest;
  calibration?: Calibration;
  encoderPath: string;
  tickPath: string;
}

/** One version folder of a model on disk. */
export interface VersionFolder {
  version: number;
  dir: string;
}

/** A model folder on disk and its version folders (those with a manifest), highest version first. */
export interface RepositoryModel {
  name: string;
  versions: VersionFolder[];
}

/**
 * Every `<modelsDir>/<name>/` folder, by name, with its `<version>/` folders that hold a manifest
 * (a version is a positive integer without leading zeros, as Triton's). A model folder with none is
 * listed with none: it is in the repository, with nothing to serve. The folder names are the only
 * model names that ever reach a path: a name a client sends is looked up here, never joined to one.
 */
export function listRepository(modelsDir: string): RepositoryModel[] {
  const root = resolve(modelsDir);
  if (!existsSync(root) || !statSync(root).isDirectory()) {
    throw new ModelFolderError(`models dir ${root} does not exist or is not a directory`);
  }
  const models: RepositoryModel[] = [];
  for (const name of readdirSync(root).sort()) {
    const modelDir = join(root, name);
    // A folder removed between the listing and this look is simply not there.
    if (!isDirectory(modelDir) || name.startsWith(".")) continue;
    const versions = readdirSync(modelDir)
      .filter((v) => /^[1-9][0-9]{0,8}$/.test(v) && existsSync(join(modelDir, v, MANIFEST_FILE)))
      .map((v) => ({ version: Number(v), dir: join(modelDir, v) }))
      .sort((a, b) => b.version - a.version);
    models.push({ name, versions });
  }
  return models;
}

/** Model folders to serve by default: the highest numeric version under every `<modelsDir>/<name>/`. */
export function discoverModelFolders(modelsDir: string): string[] {
  const found = listRepository(modelsDir).flatMap((model) => model.versions.slice(0, 1).map((v) => v.dir));
  if (found.length === 0) {
    throw new ModelFolderError(`no models found in ${resolve(modelsDir)}: expected <name>/<version>/${MANIFEST_FILE}`);
  }
  return found;
}

/**
 * What a version folder's files are now: their names, sizes and modification times (not their bytes:
 * reading every graph on every poll would cost more than the poll is worth). A version whose
 * fingerprint changed since it was loaded is reloaded. Subfolders (samples) are not part of it.
 */
export function versionFingerprint(dir: string): string {
  const hash = createHash("sha256");
  let entries: string[];
  try {
    entries = readdirSync(dir).sort();
  } catch {
    return "";
  }
  for (const entry of entries) {
    try {
      const stat = statSync(join(dir, entry));
      if (stat.isFile()) hash.update(`${entry}\0${stat.size}\0${stat.mtimeMs}\n`);
    } catch {
      // Removed while we looked: it is not part of the folder any more.
    }
  }
  return hash.digest("hex");
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Reads and checks a model folder; errors name the file and the field. */
export function loadModelFolder(dir: string): ModelDefinition {
  const folder = resolve(dir);
  const manifest = parseManifest(readJson(join(folder, MANIFEST_FILE)), join(folder, MANIFEST_FILE));
  const [versionDir, nameDir] = folder.split(/[\\/]/).reverse();
  if (nameDir !== manifest.name || versionDir !== String(manifest.version)) {
    throw new ModelFolderError(
      `${join(folder, MANIFEST_FILE)}: name/version "${manifest.name}/${manifest.version}" does not match the folder "${nameDir}/${versionDir}"`,
    );
  }
  const encoderPath = existingFile(folder, manifest.graphs.encoder.file, "graphs.encoder.file");
  const tickPath = existingFile(folder, manifest.graphs.tick.file, "graphs.tick.file");
  // The newest calibration wins: `npm run calibrate -- --unlabeled` writes calibration-N.json beside it.
  const calibrationFile = manifest.calibration ? newestCalibrationFile(folder, manifest.calibration) : undefined;
  if (manifest.calibration) existingFile(folder, manifest.calibration, "calibration");
  const calibration = calibrationFile
    ? parseCalibration(readJson(join(folder, calibrationFile)), join(folder, calibrationFile))
    : undefined;
  if (calibration?.signals.halt && manifest.outputs.halt === undefined) {
    // Thresholds on a signal the graphs do not compute: the calibration belongs to another export.
    throw new ModelFolderError(
      `${join(folder, calibrationFile as string)}: signals.halt calibrates a halting head, but ${MANIFEST_FILE} declares no outputs.halt; recalibrate with npm run calibrate -- --model ${folder} --write`,
    );
  }
  return { dir: folder, manifest, calibration, encoderPath, tickPath };
}

function existingFile(folder: string, file: string, field: string): string {
  const path = join(folder, file);
  if (!existsSync(path))
    throw new ModelFolderError(`${join(folder, MANIFEST_FILE)}: ${field} names ${path}, which does not exist`);
  return path;
}

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ModelFolderError(`cannot read ${path}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ModelFolderError(`${path} is not valid JSON: ${(error as Error).message}`);
  }
}
