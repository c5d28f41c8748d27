/**
 * Writes docs/flags.md, the reference of the server's flags and environment variables, from the option
 * table in server/src/config.ts, so that the reference cannot drift from what the server reads.
 * server/test/unit/config.test.ts fails while the committed file differs from what this writes.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { CONFIG_OPTIONS, type ConfigOption } from "../server/src/config.ts";

export const FLAGS_DOC = join(dirname(fileURLToPath(import.meta.url)), "..", "docs", "flags.md");

const USAGE = `Usage: npm run docs:flags [-- --check]

Writes docs/flags.md from the option table in server/src/config.ts (every flag, its environment
variable, default, accepted values and meaning). --check writes nothing and exits 1 when the file
is out of date.`;

const INTRO = `# Server flags

Each server option has two names: a command-line flag (\`npm start -- --port 6000\`) and an environment
variable (\`CTM_PORT=6000 npm start\`, handy in a container). A flag wins over its variable, the variable
over the default, and a bad value stops the server at start-up with a message naming the flag or
variable. This file is generated from the option table in \`server/src/config.ts\` by
\`npm run docs:flags\`; \`npm test\` fails while it is out of date.`;

/** Table cell text: a pipe would end the cell, and <name> would be read as an HTML tag. */
const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("<", "\\<");

function row(option: ConfigOption): string {
  const fallback = option.default ? `\`${option.default}\`` : "-";
  const only = option.onlyWithModelControl ? `; only with \`--model-control ${option.onlyWithModelControl}\`` : "";
  const accepts = `${option.parser.accepts}${only}`;
  return `| \`${option.flag}\` | \`${option.env}\` | ${fallback} | ${cell(accepts)} | ${cell(option.description)} |`;
}

/** docs/flags.md as the option table gives it. */
export function flagsDoc(): string {
  return [
    INTRO,
    "",
    "| Flag | Environment variable | Default | Accepts | What it does |",
    "| --- | --- | --- | --- | --- |",
    ...CONFIG_OPTIONS.map(row),
    "",
  ].join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const args = process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
  } else if (args.some((a) => a !== "--check")) {
    console.error(`docs:flags: unknown argument ${JSON.stringify(args.find((a) => a !== "--check"))}\n\n${USAGE}`);
    process.exitCode = 2;
  } else if (args.includes("--check")) {
    const current = readFileSync(FLAGS_DOC, "utf8");
    if (current !== flagsDoc()) {
      console.error("docs/flags.md is out of date: run npm run docs:flags");
      process.exitCode = 1;
    }
  } else {
    writeFileSync(FLAGS_DOC, flagsDoc());
    console.log(`wrote ${FLAGS_DOC} (${CONFIG_OPTIONS.length} options)`);
  }
}
