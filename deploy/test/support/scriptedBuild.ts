/**
 * Replays a Dockerfile target's build steps as a script on this machine, for hosts with no Docker
 * engine. Each stage gets a folder that stands for its root filesystem; WORKDIR, COPY (from the build
 * context or `--from` an earlier stage), ENV and RUN are carried out in it, in order, with the same
 * commands. What it cannot reproduce:
 *
 * - Base images: their contents are stood in for by this machine (its `node` and `npm`; the test checks
 *   that the Node major versions agree). A stage that starts FROM another stage starts from a copy.
 * - RUN steps that change the system (users, packages: `useradd`, `apt-get` ...) are refused, so that
 *   an image that grows one fails loudly here instead of being half-tested.
 * - USER: the result reports the uid:gid; the caller runs the server as that user where it can.
 * - Absolute paths in ENV, which would point outside the stage folder: refused for the same reason.
 *
 * RUN steps see npm_config_prefer_offline=true so that `npm ci` takes packages from the local cache;
 * the commands themselves are unchanged.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, statSync } from "node:fs";
import { basename, join, posix } from "node:path";
import {
  copyPaths,
  type Dockerfile,
  envPairs,
  execForm,
  instructions,
  last,
  type Stage,
  stagesFor,
} from "./dockerfile.ts";

export interface BuiltImage {
  /** Folder standing for the image's root filesystem. */
  root: string;
  /** The WORKDIR inside the image (absolute, as the Dockerfile says it). */
  workdir: string;
  /** WORKDIR on this machine. */
  hostWorkdir: string;
  env: Map<string, string>;
  /** `uid:gid` (or a name) from the last USER; undefined means root. */
  user: string | undefined;
  /** ENTRYPOINT followed by CMD: what the container runs. */
  command: string[];
  healthcheck: string[] | undefined;
  exposed: number[];
  /** Every step carried out, for the test's log. */
  steps: string[];
}

const SYSTEM_COMMANDS = /(^|[;&|]\s*)(useradd|groupadd|adduser|addgroup|apt-get|apt|apk|yum|dnf|chown|chmod)\b/;

export function buildAsScript(
  dockerfile: Dockerfile,
  target: string,
  contextDir: string,
  workDir: string,
  runEnv: NodeJS.ProcessEnv = process.env,
): BuiltImage {
  const built = new Map<string, BuiltImage>();
  const steps: string[] = [];
  let result: BuiltImage | undefined;
  for (const stage of stagesFor(dockerfile, target)) {
    const root = join(workDir, "stages", stage.name);
    const base = built.get(stage.base);
    if (base) {
      cpSync(base.root, root, { recursive: true });
      steps.push(`FROM ${stage.base} (a copy of that stage)`);
    } else {
      mkdirSync(root, { recursive: true });
      steps.push(`FROM ${stage.base} (stood in for by this machine's node ${process.version})`);
    }
    result = buildStage(stage, root, base, built, contextDir, runEnv, steps);
    built.set(stage.name, result);
  }
  return result as BuiltImage;
}

function buildStage(
  stage: Stage,
  root: string,
  base: BuiltImage | undefined,
  built: ReadonlyMap<string, BuiltImage>,
  contextDir: string,
  runEnv: NodeJS.ProcessEnv,
  steps: string[],
): BuiltImage {
  // A stage built FROM another one inherits its WORKDIR, ENV and USER (ENTRYPOINT, CMD, HEALTHCHECK and
  // EXPOSE are read from the stage itself: every target here sets its own).
  let workdir = base?.workdir ?? "/";
  const env = new Map(base?.env);
  let user = base?.user;
  const inImage = (path: string) => join(root, posix.resolve(workdir, path));
  for (const instruction of stage.instructions) {
    const where = `Dockerfile line ${instruction.line} (stage ${stage.name})`;
    switch (instruction.keyword) {
      case "WORKDIR":
        workdir = posix.resolve(workdir, instruction.args);
        mkdirSync(inImage("."), { recursive: true });
        break;
      case "COPY": {
        const from = instruction.flags.get("from");
        const sourceRoot = from === undefined ? contextDir : built.get(from)?.root;
        if (sourceRoot === undefined) throw new Error(`${where}: COPY --from=${from} names no earlier stage`);
        const { sources, dest } = copyPaths(instruction);
        const destPath = inImage(dest);
        const intoFolder = dest.endsWith("/") || sources.length > 1;
        for (const source of sources) {
          const sourcePath = join(sourceRoot, from === undefined ? source : posix.resolve("/", source));
          if (!existsSync(sourcePath)) throw new Error(`${where}: COPY source ${source} does not exist`);
          // Docker copies a folder's contents, and a file into a folder when the destination is one.
          const target =
            statSync(sourcePath).isDirectory() || !intoFolder ? destPath : join(destPath, basename(source));
          cpSync(sourcePath, target, { recursive: true });
        }
        break;
      }
      case "ENV":
        for (const [key, value] of envPairs(instruction)) {
          if (value.startsWith("/")) throw new Error(`${where}: ENV ${key}=${value} is an absolute path`);
          env.set(key, value);
        }
        break;
      case "RUN": {
        if (SYSTEM_COMMANDS.test(instruction.args)) {
          throw new Error(`${where}: RUN ${instruction.args} changes the system; the scripted build cannot replay it`);
        }
        const result = spawnSync("sh", ["-c", instruction.args], {
          cwd: inImage("."),
          env: { ...runEnv, ...Object.fromEntries(env), npm_config_prefer_offline: "true" },
          encoding: "utf8",
        });
        if (result.status !== 0) {
          throw new Error(
            `${where}: RUN ${instruction.args} exited ${result.status}\n${result.stdout}\n${result.stderr}`,
          );
        }
        break;
      }
      case "USER":
        user = instruction.args;
        break;
      case "ARG":
      case "EXPOSE":
      case "HEALTHCHECK":
      case "STOPSIGNAL":
      case "ENTRYPOINT":
      case "CMD":
      case "LABEL":
        break;
      default:
        throw new Error(`${where}: the scripted build does not know ${instruction.keyword}`);
    }
    const flags = [...instruction.flags].map(([name, value]) => `--${name}=${value} `).join("");
    steps.push(`${instruction.keyword} ${flags}${instruction.args}`);
  }
  const entrypoint = last(stage, "ENTRYPOINT");
  const cmd = last(stage, "CMD");
  const healthcheck = last(stage, "HEALTHCHECK");
  return {
    root,
    workdir,
    hostWorkdir: inImage("."),
    env,
    user,
    command: [...(entrypoint ? execForm(entrypoint) : []), ...(cmd ? execForm(cmd) : [])],
    healthcheck: healthcheck && healthcheck.args !== "NONE" ? execForm(healthcheck) : undefined,
    exposed: instructions(stage, "EXPOSE").flatMap((i) => i.args.split(/\s+/).map((p) => Number.parseInt(p, 10))),
    steps,
  };
}
