/**
 * Paths given to `npm run classify` mean what they meant where the user typed them (npm runs the script
 * in the package root and says in INIT_CWD where it was called from), plots go where they were asked to,
 * folder included, and the classify commands the README and docs show name files that exist and put
 * their plots in a folder git ignores (before, `my-digit.jpg` and `digit.png` did not exist and the
 * plots landed untracked in the repository root).
 */
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join, relative } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import sharp from "sharp";
import { MODEL_NAME, modelDir, REPO, startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";

const run = promisify(execFile);

describe("npm run classify from another directory", () => {
  let t: TestServer;
  let caller: string;

  before(async () => {
    t = await startTestServer();
    // Inside the repository (so that npm finds package.json by walking up, as it does for a user in
    // docs/), under out/, which git ignores.
    mkdirSync(join(REPO, "out"), { recursive: true });
    caller = mkdtempSync(join(REPO, "out", "caller-"));
  });
  after(async () => {
    await t.close();
    rmSync(caller, { recursive: true, force: true });
  });

  it("reads the image and writes the plot relative to the caller's directory, making the plot's folder", async () => {
    // As a user's shell would have it: npm keeps an INIT_CWD it inherits (from the npm running the tests).
    const { INIT_CWD: _, ...env } = process.env;
    const image = relative(caller, join(modelDir(), "samples", "0003_3.png"));
    assert.ok(image.startsWith(".."), image);
    const { stdout } = await run(
      "npm",
      [
        "run",
        "--silent",
        "classify",
        "--",
        image,
        "--address",
        t.address,
        "--model",
        MODEL_NAME,
        "--plot",
        "plots/t.png",
      ],
      { cwd: caller, encoding: "utf8", env },
    );
    assert.match(stdout, /answer: 3 /);
    assert.match(stdout, /plot saved to plots\/t\.png/);
    const meta = await sharp(join(caller, "plots", "t.png")).metadata();
    assert.equal(meta.format, "png");
    assert.equal(existsSync(join(REPO, "plots")), false, "nothing lands in the repository root");
  });
});

describe("npm run calibrate (and the other Python scripts) from another directory", () => {
  let caller: string;
  before(() => {
    mkdirSync(join(REPO, "out"), { recursive: true });
    caller = mkdtempSync(join(REPO, "out", "caller-"));
  });
  after(() => rmSync(caller, { recursive: true, force: true }));

  it("takes a model folder relative to the caller's directory, and a model name from the repository's models/", async () => {
    const { INIT_CWD: _, ...env } = process.env;
    const folder = relative(caller, modelDir());
    assert.ok(folder.startsWith(".."), folder);
    for (const model of [folder, MODEL_NAME]) {
      const { stdout } = await run("npm", ["run", "--silent", "calibrate", "--", "--model", model], {
        cwd: caller,
        encoding: "utf8",
        env,
      });
      assert.match(stdout, /1\.0 {2}accuracy 0\.\d{4} {2}consistency 1\.0000 {2}mean ticks/, model);
    }
  });
});

describe("the classify commands in the README and docs", () => {
  const documents = ["README.md", ...readdirSync(join(REPO, "docs")).map((f) => join("docs", f))].filter((f) =>
    f.endsWith(".md"),
  );
  const commands = documents.flatMap((document) =>
    [...readFileSync(join(REPO, document), "utf8").matchAll(/(?:cd (\S+) && )?npm run classify -- ([^`\n]*)/g)].map(
      (m) => ({
        document,
        /** Where the command is typed, relative to the repository root. */
        from: m[1] ?? ".",
        args: (m[2] as string).split("#")[0]?.trim().split(/\s+/) ?? [],
      }),
    ),
  );

  it("are found (the test reads what it thinks it reads)", () => {
    assert.ok(commands.length >= 5, `only ${commands.length} classify commands found`);
  });

  it("name input files that exist in the repository", () => {
    for (const { document, from, args } of commands) {
      const [input] = args;
      // A synopsis (`<image | tensor.json>`) or an option-only line (`--help`) names no file.
      if (!input || input.startsWith("-") || input.startsWith("<")) continue;
      assert.ok(existsSync(join(REPO, from, input)), `${document}: npm run classify -- ${input}: no such file`);
    }
  });

  it("put their plots in a folder git ignores", () => {
    for (const { document, from, args } of commands) {
      const at = args.indexOf("--plot");
      const plot = at >= 0 ? args[at + 1] : undefined;
      if (!plot) continue;
      const ignored = spawnSync("git", ["check-ignore", "-q", join(from, plot)], { cwd: REPO });
      assert.equal(ignored.status, 0, `${document}: --plot ${plot} would land untracked in the repository`);
    }
  });
});
