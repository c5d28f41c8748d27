/**
 * Reads a Dockerfile into stages and instructions: enough of the format for the tests to check the
 * images' settings against the server's configuration and to replay a target's build steps.
 *
 * Covers what this repository's Dockerfile uses: parser directives and comments, backslash line
 * continuations, global and stage ARGs with `${NAME}` substitution in FROM, `FROM <image> AS <name>`,
 * instruction flags (`--from=`, `--mount=`, `--interval=` ...), JSON (exec) and shell forms, and
 * `ENV` in its `KEY=value ...` form.
 */

export interface Instruction {
  /** Upper case: RUN, COPY, ENV ... */
  keyword: string;
  /** Leading `--name=value` flags. */
  flags: Map<string, string>;
  /** The rest of the instruction, continuations joined. */
  args: string;
  /** 1-based line of the keyword. */
  line: number;
}

export interface Stage {
  /** The `AS` name, or the stage's index as text. */
  name: string;
  /** The FROM argument after ARG substitution: an image reference or an earlier stage's name. */
  base: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  /** ARGs declared before the first FROM, with their defaults. */
  globalArgs: Map<string, string>;
  stages: Stage[];
}

export function parseDockerfile(text: string): Dockerfile {
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const { keyword, rest, line } of logicalLines(text)) {
    const { flags, args } = splitFlags(rest);
    const instruction: Instruction = { keyword, flags, args, line };
    if (keyword === "FROM") {
      const match = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!match) throw new Error(`Dockerfile line ${line}: cannot read FROM ${args}`);
      const base = substitute(match[1] as string, globalArgs);
      stages.push({ name: match[2] ?? String(stages.length), base, instructions: [] });
    } else if (stages.length === 0) {
      if (keyword !== "ARG") throw new Error(`Dockerfile line ${line}: ${keyword} before the first FROM`);
      const [name, value] = splitArg(args);
      globalArgs.set(name, value ?? "");
    } else {
      (stages.at(-1) as Stage).instructions.push(instruction);
    }
  }
  return { globalArgs, stages };
}

export function stage(dockerfile: Dockerfile, name: string): Stage {
  const found = dockerfile.stages.find((s) => s.name === name);
  if (!found) throw new Error(`the Dockerfile has no stage ${name}`);
  return found;
}

/** The stages a target needs (through FROM and COPY --from), in Dockerfile order, the target last. */
export function stagesFor(dockerfile: Dockerfile, target: string): Stage[] {
  const needed = new Set<string>();
  const visit = (name: string) => {
    if (needed.has(name)) return;
    const current = stage(dockerfile, name);
    needed.add(name);
    if (isStage(dockerfile, current.base)) visit(current.base);
    for (const instruction of current.instructions) {
      const from = instruction.flags.get("from");
      if (instruction.keyword === "COPY" && from !== undefined && isStage(dockerfile, from)) visit(from);
    }
  };
  visit(target);
  return dockerfile.stages.filter((s) => needed.has(s.name));
}

export function isStage(dockerfile: Dockerfile, name: string): boolean {
  return dockerfile.stages.some((s) => s.name === name);
}

/** All instructions of a stage with this keyword. */
export function instructions(target: Stage, keyword: string): Instruction[] {
  return target.instructions.filter((i) => i.keyword === keyword);
}

/** The last instruction of a kind, which is the one that applies (CMD, ENTRYPOINT, USER ...). */
export function last(target: Stage, keyword: string): Instruction | undefined {
  return instructions(target, keyword).at(-1);
}

/** The JSON array of an exec-form instruction; shell form is an error (signals would go to a shell). */
export function execForm(instruction: Instruction): string[] {
  const text = instruction.keyword === "HEALTHCHECK" ? instruction.args.replace(/^CMD\s+/, "") : instruction.args;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`Dockerfile line ${instruction.line}: ${instruction.keyword} is not in exec (JSON) form`);
  }
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === "string")) {
    throw new Error(`Dockerfile line ${instruction.line}: ${instruction.keyword} is not a JSON array of strings`);
  }
  return parsed;
}

/** The variables every ENV instruction of a stage sets, in order (`KEY=value` pairs, quotes removed). */
export function envOf(target: Stage): Map<string, string> {
  return new Map(instructions(target, "ENV").flatMap(envPairs));
}

/** The `KEY=value` pairs of one ENV instruction, quotes removed. */
export function envPairs(instruction: Instruction): [string, string][] {
  return (instruction.args.match(/[A-Za-z_][A-Za-z0-9_]*=(?:"[^"]*"|'[^']*'|\S*)/g) ?? []).map((pair) => {
    const at = pair.indexOf("=");
    return [pair.slice(0, at), pair.slice(at + 1).replace(/^(["'])(.*)\1$/, "$2")];
  });
}

/** `COPY [--flags] <src>... <dest>`: sources and destination. */
export function copyPaths(instruction: Instruction): { sources: string[]; dest: string } {
  const parts = instruction.args.startsWith("[")
    ? (JSON.parse(instruction.args) as string[])
    : instruction.args.split(/\s+/).filter(Boolean);
  if (parts.length < 2) throw new Error(`Dockerfile line ${instruction.line}: COPY needs a source and a destination`);
  return { sources: parts.slice(0, -1), dest: parts.at(-1) as string };
}

export function substitute(text: string, args: ReadonlyMap<string, string>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (whole, braced, bare) => {
    const value = args.get((braced ?? bare) as string);
    if (value === undefined) throw new Error(`Dockerfile: ${whole} is not a declared ARG`);
    return value;
  });
}

function splitArg(args: string): [string, string | undefined] {
  const at = args.indexOf("=");
  return at < 0 ? [args.trim(), undefined] : [args.slice(0, at).trim(), args.slice(at + 1).trim()];
}

function splitFlags(rest: string): { flags: Map<string, string>; args: string } {
  const flags = new Map<string, string>();
  let args = rest;
  for (let match = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(args); match; match = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(args)) {
    flags.set(match[1] as string, match[2] ?? "");
    args = args.slice(match[0].length);
  }
  return { flags, args: args.trim() };
}

/** Instructions with their continuations joined; comment lines (also inside continuations) dropped. */
function* logicalLines(text: string): Generator<{ keyword: string; rest: string; line: number }> {
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const first = (lines[i] as string).trim();
    if (first === "" || first.startsWith("#")) continue;
    const start = i + 1;
    let joined = "";
    let current = first;
    while (current.endsWith("\\") && i + 1 < lines.length) {
      joined += `${current.slice(0, -1)} `;
      do current = (lines[++i] as string).trim();
      while ((current === "" || current.startsWith("#")) && i + 1 < lines.length);
    }
    joined += current;
    const match = /^(\S+)\s*(.*)$/s.exec(joined) as RegExpExecArray;
    yield { keyword: (match[1] as string).toUpperCase(), rest: (match[2] as string).replace(/\s+/g, " "), line: start };
  }
}
