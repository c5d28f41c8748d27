/**
 * `npm run bench:scale` on a tiny preset of each family, through the same code path as the paper-size
 * runs: ctm.scale builds and exports the model, the server serves it as `npm start` does, and every
 * measurement comes back. tiny-imagenet is forced to external data (encoder.onnx.data, tick.onnx.data),
 * as a graph over protobuf's 2 GiB limit would be, and its served answer must still equal PyTorch's.
 * Nothing here asserts a timing: only that each measurement exists and what is exact is exact.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";
import { REPO } from "../../../tools/harness/testServer.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import { CtmBatch } from "../../src/runtime/ctmBatch.ts";

const run = promisify(execFile);
const scratch = mkdtempSync(join(tmpdir(), "ctm-scale-"));
const product = (dims: number[]) => dims.reduce((a, b) => a * b, 1);

interface Results {
  model: { ticksPerRequest: number; architecture: Record<string, number | string | number[]> };
  export: { files: Record<string, number>; externalData: boolean };
  bytes: { statePerRequest: number; contextPerRequest: number; answerMessage: number };
  startUp: { batched: { ms: number; residentMiB: number }; unbatched: { ms: number } };
  graphs: { encoder: { rows: number; ms: number }[]; tick: { rows: number; ms: number; residentMiB: number }[] };
  memory: { perActiveRequestMiB: number };
  schedulerOverhead: { rows: number; tickRuns: number; outsidePerTickMs: number }[];
  golden: { checked: boolean; topClassMatches?: boolean; probabilityError?: number };
  lone: {
    points: { ticks: number }[];
    fit: { slope: number; intercept: number };
    outsideOnnxruntime: { outsideMs: number; tickRunsMs: number };
  };
  throughput: { callers: number; batched: { rps: number; completed: number }; unbatched: { rps: number } }[];
  earlyExit: { rows: { ticks: number; rps: number }[] };
}

async function bench(preset: string, extra: string[] = []): Promise<Results> {
  const out = join(scratch, preset);
  await run(
    process.execPath,
    [
      "--import",
      "tsx",
      "server/bench/run/scale.ts",
      "--preset",
      preset,
      "--cache",
      join(scratch, "cache"),
      "--out",
      out,
    ]
      .concat(["--requests", "1", "--tick-points", "2", "--seconds", "0.5", "--warm-up", "0", "--concurrency", "2"])
      .concat([
        "--batches",
        "1,2",
        "--tick-repeats",
        "1",
        "--encoder-repeats",
        "1",
        "--max-batch",
        "4",
        "--scheduler-rows",
        "2",
        ...extra,
      ]),
    { cwd: REPO, encoding: "utf8" },
  );
  return JSON.parse(readFileSync(join(out, "scale.json"), "utf8")) as Results;
}

/** What the state and context tensors hold per request, from the architecture alone. */
function expectedBytes(a: Results["model"]["architecture"]) {
  const d = a.d_model as number;
  const pairs = (n: number) => (a.neuron_select_type === "random-pairing" ? n : (n * (n + 1)) / 2);
  const state =
    d + d * (a.memory_length as number) + 2 * pairs(a.n_synch_action as number) + 2 * pairs(a.n_synch_out as number);
  return { state: 4 * state, answer: 4 * 2 * product(a.output_shape as number[]) };
}

function checkComplete(r: Results): void {
  const expected = expectedBytes(r.model.architecture);
  assert.equal(r.bytes.statePerRequest, expected.state);
  assert.equal(r.bytes.answerMessage, expected.answer);
  assert.ok(r.bytes.contextPerRequest > 0);
  assert.ok(r.export.files["encoder.onnx"] && r.export.files["tick.onnx"]);
  assert.ok(r.startUp.batched.ms > 0 && r.startUp.unbatched.ms > 0 && r.startUp.batched.residentMiB > 0);
  assert.deepEqual(
    r.graphs.tick.map((t) => t.rows),
    [1, 2],
  );
  assert.deepEqual(
    r.graphs.encoder.map((e) => e.rows),
    [1, 2],
  );
  assert.ok(Number.isFinite(r.memory.perActiveRequestMiB));
  // Each request runs every tick: one row for --requests requests, then two rows together once.
  const ticks = r.model.ticksPerRequest;
  assert.deepEqual(
    r.schedulerOverhead.map((o) => [o.rows, o.tickRuns]),
    [
      [1, ticks],
      [2, ticks],
    ],
  );
  assert.ok(r.schedulerOverhead.every((o) => o.outsidePerTickMs >= 0));
  assert.deepEqual(
    r.lone.points.map((p) => p.ticks),
    [1, r.model.ticksPerRequest],
  );
  assert.ok(Number.isFinite(r.lone.fit.slope) && Number.isFinite(r.lone.fit.intercept));
  // The worker's step time contains its graph runs, so what is left outside them is never negative.
  assert.ok(r.lone.outsideOnnxruntime.tickRunsMs > 0);
  assert.ok(r.lone.outsideOnnxruntime.outsideMs >= 0, String(r.lone.outsideOnnxruntime.outsideMs));
  assert.equal(r.throughput.length, 1);
  assert.ok((r.throughput[0]?.batched.completed ?? 0) > 0);
  assert.equal(r.earlyExit.rows.length, 3);
  // The served answer equals PyTorch's last tick (the export writes one golden case for tiny presets).
  assert.equal(r.golden.checked, true);
  assert.equal(r.golden.topClassMatches, true);
  assert.ok((r.golden.probabilityError ?? 1) <= 1e-4, String(r.golden.probabilityError));
}

describe("npm run bench:scale on tiny presets", () => {
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it("tiny-imagenet, with every graph's weights in external data files, exports, serves and measures", async () => {
    const r = await bench("tiny-imagenet", ["--external-data"]);
    assert.equal(r.export.externalData, true);
    assert.ok(r.export.files["encoder.onnx.data"] && r.export.files["tick.onnx.data"]);
    checkComplete(r);
  });

  it("a model folder without its tick.onnx.data does not load, and the error names the missing file", async () => {
    // The folder the first test exported (the bench's cache), copied without the tick graph's weights.
    const exported = join(scratch, "cache", "tiny-imagenet-external-data", "scale-tiny-imagenet", "1");
    const broken = join(scratch, "broken", "scale-tiny-imagenet", "1");
    cpSync(exported, broken, { recursive: true });
    rmSync(join(broken, "tick.onnx.data"));
    await assert.rejects(CtmBatch.open(loadModelFolder(broken), { provider: "cpu", threads: 1 }), (error: Error) => {
      assert.match(error.message, /tick\.onnx\.data/);
      return true;
    });
  });

  it("tiny-maze ([route, 5] outputs) exports, serves and measures", async () => {
    const r = await bench("tiny-maze");
    assert.equal(r.export.externalData, false);
    checkComplete(r);
  });

  it("tiny-mnist exports, serves and measures", async () => {
    checkComplete(await bench("tiny-mnist"));
  });
});
