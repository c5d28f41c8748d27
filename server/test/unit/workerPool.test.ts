/**
 * The worker pool on its own (no server, no requests), over real scheduler workers and a copy of the
 * shipped model: what faults.test.ts does not reach through the server. A worker whose restarts keep
 * failing is retried after waits that double, the model is FAILED meanwhile and serves again by itself
 * once a restart succeeds; close() during a wait stops the retrying for good.
 *
 * faults.test.ts holds the rest of supervision end to end: a dead worker's requests fail with
 * UNAVAILABLE and its replacement answers correctly, queued and new requests fail at once while the
 * model is FAILED, and a worker that dies during the drain is not restarted. shutdownEdges.test.ts
 * holds close() while a replacement is still starting.
 */
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { Worker } from "node:worker_threads";
import { MODEL_NAME, modelDir } from "../../../tools/harness/testServer.ts";
import type { EngineLog } from "../../src/engine/engineLog.ts";
import { WorkerPool } from "../../src/engine/workerPool.ts";
import type { WorkerData } from "../../src/engine/workerProtocol.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";

interface Line {
  level: keyof EngineLog;
  msg: string;
  retryInMs?: number;
}

/** A copy of the shipped model's graphs, so that one can go missing while its worker serves. */
function modelCopy(): { data: WorkerData; tick: string } {
  // Named as the manifest says (<model>/<version>), as a models folder would hold it.
  const dir = join(mkdtempSync(join(tmpdir(), "ctm-pool-")), MODEL_NAME, "1");
  mkdirSync(dir, { recursive: true });
  for (const file of ["manifest.json", "encoder.onnx", "tick.onnx", "calibration.json"]) {
    copyFileSync(join(modelDir(), file), join(dir, file));
  }
  const data = { model: loadModelFolder(dir), session: { provider: "cpu", threads: 1 }, niceness: 0, warmUpRows: 1 };
  return { data: data as WorkerData, tick: join(dir, "tick.onnx") };
}

function pool(data: WorkerData) {
  const lines: Line[] = [];
  const log = Object.fromEntries(
    (["debug", "info", "warn", "error"] as const).map((level) => [
      level,
      (fields: object, msg: string) => lines.push({ level, msg, ...fields }),
    ]),
  ) as unknown as EngineLog;
  const lost: [number, number, boolean][] = [];
  let opened = 0;
  const workers = new WorkerPool(MODEL_NAME, data, log, {
    opened: () => opened++,
    step: () => {},
    lost: (worker, code, restarting) => lost.push([worker.index, code, restarting]),
  });
  const failures: (string | undefined)[] = [];
  workers.onFailureChange((failure) => failures.push(failure));
  return { workers, lines, lost, failures, opened: () => opened };
}

/** Kills a worker the way a bug would (see "How a worker dies in the test", docs/reliability.md). */
async function kill(workers: WorkerPool): Promise<void> {
  const worker = (workers.workers[0] as unknown as { worker: Worker }).worker;
  const died = new Promise((resolve) => worker.once("exit", resolve));
  worker.postMessage({ type: "credit", credits: 0 });
  assert.equal(await died, 1);
}

async function until(done: () => boolean, timeoutMs = 30_000): Promise<void> {
  const started = Date.now();
  while (!done()) {
    if (Date.now() - started > timeoutMs) throw new Error(`not done within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const failedRestarts = (lines: Line[]) => lines.filter((line) => line.msg === "could not restart scheduler worker");

describe("a worker pool whose worker dies and cannot be restarted", () => {
  it("retries after waits that double, is FAILED meanwhile, and serves again once a restart succeeds", async () => {
    const { data, tick } = modelCopy();
    const t = pool(data);
    await t.workers.open(1);
    try {
      assert.equal(t.workers.workers.length, 1);
      assert.equal(t.opened(), 1);
      renameSync(tick, `${tick}.away`);
      await kill(t.workers);
      assert.deepEqual(t.lost, [[0, 1, true]], "worker 0 exited with code 1 and is being restarted");
      assert.equal(t.workers.workers.length, 0);

      await until(() => failedRestarts(t.lines).length >= 3);
      assert.deepEqual(
        failedRestarts(t.lines)
          .slice(0, 3)
          .map((line) => [line.level, line.retryInMs]),
        [
          ["error", 500],
          ["error", 1000],
          ["error", 2000],
        ],
      );
      assert.match(
        t.workers.failure ?? "",
        /^model mnist-ctm is not serving: its inference worker 0 stopped \(exit code 1\) and could not be restarted: model mnist-ctm: worker 0 could not start: .*tick\.onnx.*; the server keeps retrying$/,
      );
      assert.equal(t.failures.length, 1, "the listeners hear of the failure once, not once per retry");

      renameSync(`${tick}.away`, tick);
      await until(() => t.workers.failure === undefined);
      assert.equal(t.workers.workers.length, 1);
      assert.equal(t.opened(), 2);
      assert.deepEqual(t.failures.slice(1), [undefined]);
      assert.ok(
        t.lines.some((line) => line.level === "info" && line.msg === "scheduler worker restarted; serving again"),
      );
    } finally {
      await t.workers.close();
    }
    assert.equal(t.workers.workers.length, 0);
  });

  it("stops retrying once closed, even while it waits to retry", async () => {
    const { data, tick } = modelCopy();
    const t = pool(data);
    await t.workers.open(1);
    renameSync(tick, `${tick}.away`);
    await kill(t.workers);
    // The second wait is a second long: close() lands inside it.
    await until(() => failedRestarts(t.lines).length >= 2);
    renameSync(`${tick}.away`, tick);
    await t.workers.close();
    const tries = failedRestarts(t.lines).length;
    const opened = t.opened();
    // Past the wait close() landed in, and past the next: a retry would have started a worker by now.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.equal(failedRestarts(t.lines).length, tries);
    assert.equal(t.opened(), opened);
    assert.equal(t.workers.workers.length, 0);
    assert.ok(!t.lines.some((line) => line.msg === "scheduler worker restarted; serving again"));
  });
});
