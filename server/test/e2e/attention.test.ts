/**
 * include_attention: every TickUpdate carries where the model looked (the tick graph's attention
 * output), equal to PyTorch's CTM.attention_map from golden.json within 1e-4; callers who do not ask
 * get none, even when they share a batch with one who does.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  failure,
  type GoldenCase,
  MODEL_NAME,
  modelDir,
  readModelJson,
  startTestServer,
  type TestServer,
  tensorRequest,
} from "../../../tools/harness/testServer.ts";
import { Scheduler } from "../../src/engine/scheduler.ts";
import type { AdmitMessage, StepMessage } from "../../src/engine/workerProtocol.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import { CtmBatch } from "../../src/runtime/ctmBatch.ts";
import type { TickUpdateMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";

const TOLERANCE = 1e-4;
type AttentionCase = GoldenCase & { attention: number[][] };

function checkAttention(ticks: TickUpdateMessage[], golden: AttentionCase, label: string): void {
  assert.equal(ticks.length, golden.attention.length, `${label}: one message per tick`);
  ticks.forEach((tick, i) => {
    assert.deepEqual(tick.attention_shape, [4, 7, 7], `${label} tick ${i + 1}: [heads, 7x7 token grid]`);
    const expected = golden.attention[i] as number[];
    assert.equal(tick.attention.length, expected.length);
    let worst = 0;
    for (let j = 0; j < expected.length; j++)
      worst = Math.max(worst, Math.abs((tick.attention[j] as number) - (expected[j] as number)));
    assert.ok(worst <= TOLERANCE, `${label} tick ${i + 1}: attention differs from PyTorch by ${worst}`);
    for (let h = 0; h < 4; h++) {
      const sum = tick.attention.slice(h * 49, (h + 1) * 49).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(sum - 1) < 1e-4, `${label} tick ${i + 1} head ${h}: weights sum to ${sum}`);
    }
  });
}

describe("attention per tick (include_attention)", () => {
  const golden = readModelJson<{ ticks: number; cases: AttentionCase[] }>("golden.json");
  const everyTick = { min_ticks: golden.ticks, max_ticks: golden.ticks };
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.close());

  it("the shipped model's fixtures have attention to compare against", () => {
    assert.ok(golden.cases.length > 0 && golden.cases.every((c) => c.attention?.length === golden.ticks));
  });

  it("streams each tick's attention, equal to PyTorch's within 1e-4", async () => {
    for (const [i, case_] of golden.cases.entries()) {
      const ticks = await t.client.collect({ ...tensorRequest(case_, everyTick), include_attention: true });
      checkAttention(ticks, case_, `case ${i}`);
    }
  });

  it("is off by default, and a caller who does not ask gets none beside one who does", async () => {
    const case_ = golden.cases[0] as AttentionCase;
    // Started together, the two share tick runs; only the rows that asked get the weights.
    const [asked, plain] = await Promise.all([
      t.client.collect({ ...tensorRequest(case_, everyTick), include_attention: true }),
      t.client.collect(tensorRequest(case_, everyTick)),
    ]);
    checkAttention(asked, case_, "asked");
    assert.equal(plain.length, golden.ticks);
    for (const tick of plain) assert.deepEqual([tick.attention, tick.attention_shape], [[], []]);
  });

  it("Classify's trace carries it too", async () => {
    const case_ = golden.cases[1] as AttentionCase;
    const response = await t.client.classify({
      ...tensorRequest(case_, everyTick),
      include_trace: true,
      include_attention: true,
    });
    checkAttention(response.trace, case_, "trace");
  });
});

describe("include_attention on a model exported without an attention output", () => {
  let t: TestServer;
  before(async () => {
    // The shipped model with the manifest's "attention" removed, as an older export wrote it; the
    // graph's extra output is then computed and ignored, which the graph contract allows.
    const dir = mkdtempSync(join(tmpdir(), "ctm-models-"));
    const folder = join(dir, MODEL_NAME, "1");
    cpSync(modelDir(), folder, { recursive: true });
    const manifest = JSON.parse(readFileSync(join(folder, "manifest.json"), "utf8"));
    delete manifest.attention;
    writeFileSync(join(folder, "manifest.json"), JSON.stringify(manifest));
    t = await startTestServer({ modelsDir: dir });
  });
  after(() => t.close());

  it("is INVALID_ARGUMENT naming the field and the model; without it the model serves", async () => {
    const golden = readModelJson<{ cases: GoldenCase[] }>("golden.json").cases[0] as GoldenCase;
    const error = await failure(t.client.collect({ ...tensorRequest(golden), include_attention: true }));
    assert.equal(error.code, 3);
    assert.match(error.details, /^include_attention: model mnist-ctm was exported without an attention output/);
    const ticks = await t.client.collect(tensorRequest(golden));
    assert.ok(ticks.length > 0 && ticks.every((tick) => tick.attention.length === 0));
  });
});

describe("the scheduler worker copies attention", () => {
  /** Runs `requests` through a real batch and scheduler for 3 ticks; returns every step message. */
  async function steps(requests: { id: number; attention: boolean }[]): Promise<StepMessage[]> {
    const model = loadModelFolder(modelDir());
    const batch = await CtmBatch.open(model, { provider: "cpu", threads: 1 });
    const golden = readModelJson<{ cases: GoldenCase[] }>("golden.json").cases[0] as GoldenCase;
    const emitted: StepMessage[] = [];
    let done: () => void = () => {};
    const finished = new Promise<void>((resolve) => {
      done = resolve;
    });
    let left = requests.length;
    const scheduler = new Scheduler(batch, model.manifest.output, (step) => {
      emitted.push(step);
      left -= step.finished.length;
      if (left === 0) done();
    });
    const running = scheduler.run();
    for (const { id, attention } of requests) {
      const admit: AdmitMessage = {
        type: "admit",
        id,
        input: Float32Array.from(golden.input),
        policy: { signal: "certainty", threshold: 1, minTicks: 3, maxTicks: 3, patience: 0, deadlineMs: 0 },
        deadlineAt: Number.POSITIVE_INFINITY,
        streamTicks: true,
        attention,
        readAhead: 0,
      };
      scheduler.admit(admit);
    }
    await finished;
    scheduler.stop();
    await running;
    await batch.close();
    return emitted.filter((step) => step.ticks);
  }

  it("back to the main thread only when a request in the batch asked for it, and only its rows", async () => {
    const none = await steps([{ id: 1, attention: false }]);
    assert.ok(none.length > 0 && none.every((step) => step.ticks?.attention === undefined));

    const mixed = await steps([
      { id: 1, attention: false },
      { id: 2, attention: true },
    ]);
    assert.ok(mixed.length > 0);
    for (const step of mixed) {
      const rows = step.ticks as NonNullable<StepMessage["ticks"]>;
      const attention = rows.attention as Float32Array;
      assert.equal(attention.length, rows.ids.length * 4 * 49);
      rows.ids.forEach((id, i) => {
        const row = attention.subarray(i * 196, (i + 1) * 196);
        const sum = row.reduce((a, b) => a + b, 0);
        assert.ok(id === 2 ? Math.abs(sum - 4) < 1e-3 : sum === 0, `request ${id}: its row sums to ${sum}`);
      });
    }
  });
});
