/**
 * Every npm script that takes options answers `--help` with its usage and exit 0, without starting
 * its work (before this test, `npm run bench -- --help` ran the whole benchmark). A script added to
 * package.json must be listed here, either with --help or among those that take no options.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { REPO } from "../../../tools/harness/testServer.ts";

const run = promisify(execFile);

/** Script -> what its usage must mention (an option it takes). */
const ANSWER_HELP: Record<string, RegExp> = {
  start: /--max-batch/,
  classify: /--threshold/,
  bench: /--rounds/,
  "bench:oip": /--concurrency/,
  "bench:lowering": /--objective-ms/,
  "bench:scale": /--preset/,
  loadtest: /compare/,
  soak: /--minutes/,
  health: /--service/,
  "bench:scale:cuda": /--provider cuda/,
  train: /--steps/,
  export: /--checkpoint/,
  calibrate: /--model/,
  fixtures: /--count/,
  bootstrap: /--python/,
  "test:ts": /substring/,
  "test:deploy": /under deploy\//,
  "docs:flags": /docs\/flags\.md/,
};

/**
 * Scripts whose usage line is npm's own (the Python ones are argparse's `python -m ...`): each names
 * itself, not the file or the script it runs (health named `node --import tsx ...`, test:deploy
 * printed test:ts's usage).
 */
const NAMES_ITSELF = [
  "classify",
  "bench",
  "bench:oip",
  "bench:lowering",
  "bench:scale",
  "bench:scale:cuda",
  "loadtest",
  "soak",
  "health",
  "bootstrap",
  "test:ts",
  "test:deploy",
  "docs:flags",
];

/** Scripts that take no options of their own, or hand them to a tool with its own --help. */
const NO_OPTIONS = ["test", "lint", "format", "typecheck", "test:py", "docker:build", "docker:build:cuda"];

describe("npm run <script> -- --help", { concurrency: 4 }, () => {
  it("every script in package.json is accounted for", () => {
    const { scripts } = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as {
      scripts: Record<string, string>;
    };
    assert.deepEqual(Object.keys(scripts).sort(), [...Object.keys(ANSWER_HELP), ...NO_OPTIONS].sort());
  });

  for (const [script, mentions] of Object.entries(ANSWER_HELP)) {
    // A generous bound: the Python ones import PyTorch. A script that starts its work instead (a
    // benchmark, a server) runs past it and fails.
    it(`${script} prints its usage and exits 0`, { timeout: 90_000 }, async () => {
      const { stdout } = await run("npm", ["run", "--silent", script, "--", "--help"], {
        cwd: REPO,
        encoding: "utf8",
        timeout: 80_000,
      });
      assert.match(stdout, /^usage:/im);
      assert.match(stdout, mentions);
      if (script === "start") assert.match(stdout, /^usage: npm start\b/im);
      if (NAMES_ITSELF.includes(script)) {
        // The usage line, and the line after it where the usage is a list of forms (loadtest).
        const lines = stdout.split("\n");
        const at = lines.findIndex((line) => /^usage:/i.test(line));
        const head = lines.slice(at, at + 2).join("\n");
        assert.ok(head.includes(`npm run ${script} `), `the usage of ${script} names npm run ${script}:\n${head}`);
      }
    });
  }
});
