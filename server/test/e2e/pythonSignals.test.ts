/**
 * Signalling an npm script that runs Python (through scripts/py.mjs) stops the Python process: npm
 * forwards SIGINT/SIGTERM to the script, py.mjs hands it to Python and waits for it, and nothing is
 * left running. Before, SIGTERM ended npm and left training on both cores, reparented to PID 1.
 *
 * The real chain runs: npm, its shell, bootstrap.mjs (for train), py.mjs and the .venv's Python. The
 * one stand-in is what Python runs: a sitecustomize module on PYTHONPATH (py.mjs keeps the caller's
 * PYTHONPATH) that reports its pid, waits, and reports the signal it gets, so that no training starts.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { REPO } from "../../../tools/harness/testServer.ts";

const SITE = mkdtempSync(join(tmpdir(), "ctm-py-signals-"));
writeFileSync(
  join(SITE, "sitecustomize.py"),
  `import os, signal, sys, time
# Only the Python that py.mjs runs (ctm.train, pytest, -c): not the pip that bootstrap.mjs may run first.
if "pip" not in sys.orig_argv:
    def stop(number, frame):
        print(f"python {os.getpid()} got {signal.Signals(number).name}", flush=True)
        os._exit(3)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"python {os.getpid()} waiting", flush=True)
    time.sleep(60)
`,
);
const WAITING = /python (\d+) waiting/;
/** npm, py.mjs and Python end within milliseconds of the signal; this only bounds a hang. */
const ENDS_WITHIN_MS = 15_000;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  /** Whether Python still ran at the moment the command exited. */
  pythonOutlived: boolean;
}

/** Starts a command with the stand-in on PYTHONPATH; resolves with Python's pid once it waits. */
function start(
  command: string,
  args: string[],
): { child: ChildProcess; python: Promise<number>; ended: Promise<Ended> } {
  const child = spawn(command, args, {
    cwd: REPO,
    env: { ...process.env, PYTHONPATH: SITE },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let stdout = "";
  let pid: number | undefined;
  let found: (pid: number) => void;
  const python = new Promise<number>((resolve) => (found = resolve));
  child.stdout?.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    const match = WAITING.exec(stdout);
    if (match && pid === undefined) {
      pid = Number(match[1]);
      found(pid);
    }
  });
  // On exit, not on close: a Python left behind holds the pipe open. Its last words may still be in
  // the pipe, so they get a moment to arrive.
  const ended = new Promise<Ended>((resolve) =>
    child.on("exit", (code, signal) => {
      const pythonOutlived = pid !== undefined && alive(pid);
      const done = () => resolve({ code, signal, stdout, pythonOutlived });
      if (!child.stdout || child.stdout.closed) return done();
      const late = setTimeout(done, 2_000);
      child.stdout.once("close", () => {
        clearTimeout(late);
        done();
      });
    }),
  );
  return { child, python, ended };
}

async function signalAndWait(
  command: string,
  args: string[],
  signal: NodeJS.Signals,
): Promise<{ ended: Ended; python: number }> {
  const { child, python, ended } = start(command, args);
  const pid = await python;
  try {
    child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      ended,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${command} ${args.join(" ")} did not end within ${ENDS_WITHIN_MS} ms of ${signal}`)),
          ENDS_WITHIN_MS,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    assert.equal(result.pythonOutlived, false, `Python (pid ${pid}) still ran when ${command} ended`);
    return { ended: result, python: pid };
  } finally {
    // Only when the test failed: leave nothing running.
    if (alive(pid)) process.kill(pid, "SIGKILL");
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
}

describe("signals reach Python through npm and scripts/py.mjs", { timeout: 120_000 }, () => {
  for (const script of ["test:py", "train"]) {
    for (const signal of ["SIGTERM", "SIGINT"] as const) {
      it(`${signal} to 'npm run ${script}' stops its Python and npm waits for it`, async () => {
        const { ended, python } = await signalAndWait("npm", ["run", "--silent", script], signal);
        assert.match(ended.stdout, new RegExp(`python ${python} got ${signal}`));
        assert.notEqual(ended.code, 0, "a stopped run is not a success");
      });
    }
  }

  it("py.mjs exits with Python's exit code", async () => {
    const { python, ended } = start(process.execPath, ["scripts/py.mjs", "-c", "pass"]);
    process.kill(await python, "SIGTERM");
    const result = await ended;
    assert.equal(result.code, 3);
    assert.equal(result.signal, null);
  });

  it("py.mjs ends by the signal that ended Python", async () => {
    // Python without a handler for SIGHUP: its default action ends it, and py.mjs reports the same.
    const { python, ended } = start(process.execPath, ["scripts/py.mjs", "-c", "pass"]);
    process.kill(await python, "SIGHUP");
    const result = await ended;
    assert.equal(result.signal, "SIGHUP");
  });
});
