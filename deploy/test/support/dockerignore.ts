/**
 * The build context Docker would send: the repository folder less what .dockerignore leaves out.
 *
 * The matching rules are Docker's (moby/patternmatcher): patterns are relative to the context root,
 * `*` and `?` stay inside one path segment, `**` spans any number of them, a pattern that matches a
 * folder also matches everything under it, `!` re-includes, and the last pattern that matches wins.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, posix } from "node:path";

interface Pattern {
  exclude: boolean;
  text: string;
  regex: RegExp;
}

export class DockerIgnore {
  private readonly patterns: Pattern[];

  constructor(text: string) {
    this.patterns = text
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "" && !line.startsWith("#"))
      .map((line) => {
        const exclude = !line.startsWith("!");
        const cleaned = posix.normalize((exclude ? line : line.slice(1)).trim()).replace(/^\/+|\/+$/g, "");
        return { exclude, text: cleaned, regex: globToRegex(cleaned) };
      });
  }

  static read(contextDir: string): DockerIgnore {
    try {
      return new DockerIgnore(readFileSync(join(contextDir, ".dockerignore"), "utf8"));
    } catch {
      return new DockerIgnore("");
    }
  }

  /** Whether a path (relative, with `/`) is left out of the context. */
  excludes(path: string): boolean {
    const prefixes = path.split("/").map((_, i, parts) => parts.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const pattern of this.patterns) {
      if (prefixes.some((prefix) => pattern.regex.test(prefix))) excluded = pattern.exclude;
    }
    return excluded;
  }

  /** Whether some `!` pattern could re-include a path below this excluded folder. */
  mayReincludeBelow(dir: string): boolean {
    return this.patterns.some(
      (p) => !p.exclude && (p.text.startsWith(`${dir}/`) || p.text.startsWith("*") || p.text.startsWith("**")),
    );
  }
}

/** Copies the build context of `contextDir` into `dest`; returns the relative paths copied. */
export function copyBuildContext(contextDir: string, dest: string): string[] {
  const ignore = DockerIgnore.read(contextDir);
  const copied: string[] = [];
  const walk = (relative: string) => {
    for (const entry of readdirSync(join(contextDir, relative), { withFileTypes: true })) {
      const path = relative === "" ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory()) {
        if (!ignore.excludes(path) || ignore.mayReincludeBelow(path)) walk(path);
      } else if ((entry.isFile() || entry.isSymbolicLink()) && !ignore.excludes(path)) {
        mkdirSync(dirname(join(dest, path)), { recursive: true });
        copyFileSync(join(contextDir, path), join(dest, path));
        copied.push(path);
      }
    }
  };
  walk("");
  return copied.sort();
}

function globToRegex(glob: string): RegExp {
  let source = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i] as string;
    if (c === "*" && glob[i + 1] === "*") {
      // `**/` also matches no folder at all; a trailing `**` matches everything below.
      if (glob[i + 2] === "/") {
        source += "(?:.*/)?";
        i += 2;
      } else {
        source += ".*";
        i += 1;
      }
    } else if (c === "*") source += "[^/]*";
    else if (c === "?") source += "[^/]";
    else if (c === "[") {
      const end = glob.indexOf("]", i);
      if (end < 0) source += "\\[";
      else {
        source += glob.slice(i, end + 1).replace(/^\[!/, "[^");
        i = end;
      }
    } else source += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}
