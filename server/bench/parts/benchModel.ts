/**
 * Which model folder a bench measures: mnist-ctm unless told otherwise, by name, never "the first folder
 * under models/" (that changes the moment another model ships, e.g. maze-ctm sorts before mnist-ctm).
 */
import { join } from "node:path";
import { discoverModelFolders } from "../../src/model/modelFolder.ts";

export const DEFAULT_BENCH_MODEL = "mnist-ctm";

/** The highest version of model `name` under `<repo>/models`; an unknown name is an error naming it. */
export function benchModelFolder(repo: string, name: string = DEFAULT_BENCH_MODEL): string {
  const folders = discoverModelFolders(join(repo, "models"));
  const folder = folders.find((f) => f.split(/[\\/]/).at(-2) === name);
  if (!folder) {
    const known = folders.map((f) => f.split(/[\\/]/).at(-2)).join(", ");
    throw new Error(`model ${name} is not under ${join(repo, "models")} (found: ${known})`);
  }
  return folder;
}
