/**
 * The inputs a load test sends: a model folder's labelled samples (docs/models.md), any labels.json in
 * that format, or a plain folder of images (labelled when it holds a labels.json).
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";

export type SampleInput = { image: { data: Buffer } } | { tensor: { shape: number[]; values: number[] } };

export interface Sample {
  /** File name, or `#index` for tensor samples. */
  name: string;
  input: SampleInput;
  /** The class index, one per position for multi-position models; null when unlabelled. */
  label: number[] | null;
}

export interface SampleSet {
  /** The labels file or folder the samples came from. */
  source: string;
  samples: Sample[];
  labelled: number;
}

const IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg", ".webp", ".gif", ".tif", ".tiff"];

const isImage = (file: string) => IMAGE_EXTENSIONS.some((ext) => file.toLowerCase().endsWith(ext));

function labelOf(where: string, label: unknown): number[] {
  const isClass = (x: unknown): x is number => typeof x === "number" && Number.isInteger(x) && x >= 0;
  if (isClass(label)) return [label];
  if (Array.isArray(label) && label.length > 0 && label.every(isClass)) return label;
  throw new Error(`${where}.label must be a class index or a list of them, got ${JSON.stringify(label)}`);
}

function fromLabelsFile(file: string): SampleSet {
  let entries: unknown;
  try {
    entries = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new Error(`cannot read samples from ${file}: ${(error as Error).message}`);
  }
  if (!Array.isArray(entries) || entries.length === 0) throw new Error(`${file} must be a non-empty JSON list`);
  const dir = dirname(file);
  const samples = entries.map((entry: Record<string, unknown>, i): Sample => {
    const where = `${file}[${i}]`;
    const label = entry.label === undefined ? null : labelOf(where, entry.label);
    if (typeof entry.file === "string") {
      return { name: entry.file, input: { image: { data: readFileSync(join(dir, entry.file)) } }, label };
    }
    if (Array.isArray(entry.tensor)) {
      const values = entry.tensor as number[];
      const shape = Array.isArray(entry.shape) ? (entry.shape as number[]) : [values.length];
      return { name: `#${i}`, input: { tensor: { shape, values } }, label };
    }
    throw new Error(`${where} needs "file" (an image next to ${file}) or "tensor"`);
  });
  return { source: file, samples, labelled: samples.filter((s) => s.label !== null).length };
}

/**
 * `path` is a model folder (manifest.json names its samples), a labels.json, or a folder: one with a
 * labels.json is read through it, one without is every image in it, sorted by name, unlabelled.
 */
export function loadSamples(path: string): SampleSet {
  if (!existsSync(path)) throw new Error(`samples: ${path} does not exist`);
  if (statSync(path).isFile()) return fromLabelsFile(path);
  const manifest = join(path, "manifest.json");
  if (existsSync(manifest)) {
    const { samples } = JSON.parse(readFileSync(manifest, "utf8")) as { samples?: string };
    if (!samples) throw new Error(`${manifest} names no samples`);
    return fromLabelsFile(join(path, samples));
  }
  if (existsSync(join(path, "labels.json"))) return fromLabelsFile(join(path, "labels.json"));
  const files = readdirSync(path).filter(isImage).sort();
  if (files.length === 0)
    throw new Error(`samples: ${path} has no labels.json and no images (${IMAGE_EXTENSIONS.join(" ")})`);
  const samples = files.map((file) => ({
    name: file,
    input: { image: { data: readFileSync(join(path, file)) } },
    label: null,
  }));
  return { source: path, samples, labelled: 0 };
}
