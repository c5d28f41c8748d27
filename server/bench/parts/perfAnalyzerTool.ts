/**
 * Triton's perf_analyzer, fetched into out/perf-analyzer/ once and reused.
 *
 * PyPI's `perf-analyzer` is a placeholder (0.1.0, `hello()`); the binary ships inside the
 * `tritonclient` wheels (data/bin/perf_analyzer; 2.60 still has it, 2.65 not). Those from 2.52 on
 * are built against glibc 2.38 and do not run on Debian 12 (glibc 2.36), so 2.51.0 is the newest
 * that runs here. It links two libraries no wheel of its own brings: libcudart.so.12 (PyPI
 * nvidia-cuda-runtime-cu12, though nothing here runs on a GPU) and libb64.so.0d (Debian's libb64-0d,
 * fetched with `apt-get download` and unpacked, not installed). Everything goes into a virtual
 * environment and folder of its own, never the project's .venv.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";

export const TRITONCLIENT_VERSION = "2.51.0";
const CUDA_RUNTIME = "nvidia-cuda-runtime-cu12==12.8.90";
const LIBB64 = "libb64-0d";

export interface PerfAnalyzer {
  binary: string;
  /** The environment it runs with (LD_LIBRARY_PATH for its two libraries). */
  env: NodeJS.ProcessEnv;
  version: string;
}

function run(command: string, args: string[], cwd: string, step: string, env = process.env): string {
  try {
    return execFileSync(command, args, { cwd, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    throw new Error(`perf_analyzer set-up, ${step}: ${command} ${args.join(" ")} failed: ${stderr?.trim() ?? error}`);
  }
}

/** Unzips the members of `wheel` that end with one of `suffixes` into `dir`. */
function extract(python: string, wheel: string, suffixes: string[], dir: string, step: string): void {
  const script = `import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for name in z.namelist():
    if any(name.endswith(s) for s in sys.argv[3:]):
        z.extract(name, sys.argv[2])`;
  run(python, ["-c", script, wheel, dir, ...suffixes], dir, step);
}

function find(dir: string, name: string): string | undefined {
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.name === name && !entry.isDirectory()) return join(entry.parentPath, entry.name);
  }
  return undefined;
}

/** perf_analyzer, set up under `root` (e.g. out/perf-analyzer) unless it already is. */
export function perfAnalyzer(root: string, log: (line: string) => void): PerfAnalyzer {
  mkdirSync(root, { recursive: true });
  const venv = join(root, "venv");
  const python = join(venv, "bin", "python");
  const wheels = join(root, "wheels");
  const unpacked = join(root, "unpacked");
  if (!existsSync(python)) {
    log(`perf_analyzer: a virtual environment of its own in ${venv}`);
    run("python3", ["-m", "venv", venv], root, "creating its virtual environment");
  }
  if (!find(root, "perf_analyzer") || !find(root, "libcudart.so.12")) {
    log(`perf_analyzer: downloading tritonclient==${TRITONCLIENT_VERSION} and ${CUDA_RUNTIME} wheels`);
    const pip = [
      "-m",
      "pip",
      "download",
      "--quiet",
      "--no-deps",
      "--only-binary=:all:",
      "-d",
      wheels,
      `tritonclient==${TRITONCLIENT_VERSION}`,
      CUDA_RUNTIME,
    ];
    run(python, pip, root, "downloading wheels");
    mkdirSync(unpacked, { recursive: true });
    for (const wheel of readdirSync(wheels)) {
      extract(python, join(wheels, wheel), ["/bin/perf_analyzer", "/libcudart.so.12"], unpacked, `unpacking ${wheel}`);
    }
  }
  if (!find(root, "libb64.so.0d")) {
    log(`perf_analyzer: apt-get download ${LIBB64} (unpacked, not installed)`);
    run("apt-get", ["download", LIBB64], root, `downloading ${LIBB64}`);
    const deb = readdirSync(root).find((f) => f.startsWith(LIBB64) && f.endsWith(".deb"));
    if (!deb) throw new Error(`perf_analyzer set-up: apt-get download ${LIBB64} left no .deb in ${root}`);
    run("dpkg", ["-x", deb, join(root, "libb64")], root, `unpacking ${deb}`);
  }
  const binary = find(root, "perf_analyzer") as string;
  run("chmod", ["+x", binary], root, "making it executable");
  const libraries = ["libcudart.so.12", "libb64.so.0d"].map((lib) => dirname(find(root, lib) as string));
  const env = { ...process.env, LD_LIBRARY_PATH: [...libraries, process.env.LD_LIBRARY_PATH ?? ""].join(":") };
  const missing = run("ldd", [binary], root, "checking its libraries", env)
    .split("\n")
    .filter((line) => /not found/.test(line));
  if (missing.length > 0) throw new Error(`perf_analyzer cannot run here: ${missing.join("; ")}`);
  return { binary, env, version: TRITONCLIENT_VERSION };
}
