/**
 * A model is a folder that describes itself: `<models>/<name>/<version>/manifest.json` beside its ONNX
 * graphs, calibration and fixtures (Triton's model-repository layout). The server serves the highest
 * version of every model it finds.
 */
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

/** Model folders to serve: the highest numeric version under every `<modelsDir>/<name>/`. */
export function discoverModelFolders(modelsDir: string): string[] {
  const root = resolve(modelsDir);
  if (!existsSync(root) || !statSync(root).isDirectory()) {
    throw new ModelFolderError(`models dir ${root} does not exist or is not a directory`);
  }
  const found: string[] = [];
  for (const name of readdirSync(root).sort()) {
    const modelDir = join(root, name);
    if (!statSync(modelDir).isDirectory()) continue;
    const versions = readdirSync(modelDir)
      .filter((v) => /^[1-9][0-9]*$/.test(v) && existsSync(join(modelDir, v, MANIFEST_FILE)))
      .map(Number)
      .sort((a, b) => b - a);
    if (versions.length > 0) found.push(join(modelDir, String(versions[0])));
  }
  if (found.length === 0) {
    throw new ModelFolderError(`no models found in ${root}: expected <name>/<version>/${MANIFEST_FILE}`);
  }
  return found;
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
