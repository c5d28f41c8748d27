/**
 * The batch under random churn, against the golden fixtures: rows join (in batches), leave, are parked
 * and resumed in a random order for hundreds of steps, and at every tick each running row's logits
 * and certainty must be exactly the ones the export recorded for its input at its own tick. Parking
 * is what keeps a stream whose client stopped reading out of the tick runs (ModelEngine.pace), so it
 * must hold a row's state untouched for as long as it lasts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type GoldenCase, modelDir, readModelJson } from "../../../tools/harness/testServer.ts";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import { CtmBatch } from "../../src/runtime/ctmBatch.ts";

const golden = readModelJson<{ ticks: number; cases: GoldenCase[] }>("golden.json");
const STEPS = 300;
const TOLERANCE = 1e-4;

interface Row {
  golden: GoldenCase;
  ticks: number;
  parked: boolean;
}

describe("CtmBatch under random join, leave, park and resume", () => {
  it(`matches the golden logits at every tick over ${STEPS} random steps`, async () => {
    const batch = await CtmBatch.open(loadModelFolder(modelDir()), { provider: "cpu", threads: 1 });
    // A fixed seed: a failure reproduces.
    let seed = 20261201;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const pick = <T>(items: T[], chance: number) => items.filter(() => random() < chance);
    const rows = new Map<number, Row>();
    let nextId = 1;
    let ticked = 0;
    let worst = 0;
    let maxParked = 0;
    try {
      for (let step = 0; step < STEPS; step++) {
        const live = [...rows.keys()];
        const leaving = pick(live, 0.08);
        batch.leave(leaving);
        for (const id of leaving) rows.delete(id);
        const staying = [...rows.entries()];
        const parking = pick(
          staying.filter(([, r]) => !r.parked).map(([id]) => id),
          0.15,
        );
        const resuming = pick(
          staying.filter(([, r]) => r.parked).map(([id]) => id),
          0.3,
        );
        batch.park(parking);
        batch.resume(resuming);
        for (const id of parking) (rows.get(id) as Row).parked = true;
        for (const id of resuming) (rows.get(id) as Row).parked = false;
        if (random() < 0.4) {
          const joining = Array.from({ length: 1 + Math.floor(random() * 5) }, () => {
            const c = golden.cases[Math.floor(random() * golden.cases.length)] as GoldenCase;
            return { id: nextId++, c };
          });
          const inputs = new Float32Array(joining.length * (joining[0]?.c.input.length ?? 0));
          joining.forEach(({ c }, i) => {
            inputs.set(c.input, i * c.input.length);
          });
          await batch.join(
            joining.map((j) => j.id),
            inputs,
          );
          for (const { id, c } of joining) rows.set(id, { golden: c, ticks: 0, parked: false });
        }
        const running = [...rows.entries()].filter(([, r]) => !r.parked);
        maxParked = Math.max(maxParked, rows.size - running.length);
        if (running.length === 0) continue;
        const run = await batch.tick();
        ticked++;
        assert.deepEqual(
          [...run.ids].sort((a, b) => a - b),
          running.map(([id]) => id).sort((a, b) => a - b),
          `step ${step}: the rows that ran`,
        );
        const width = golden.cases[0]?.logits[0]?.length as number;
        run.ids.forEach((id, i) => {
          const row = rows.get(id) as Row;
          const expected = row.golden.logits[row.ticks] as number[];
          expected.forEach((v, j) => {
            worst = Math.max(worst, Math.abs((run.logits[i * width + j] as number) - v));
          });
          const certainty = row.golden.certainty[row.ticks] as number;
          worst = Math.max(worst, Math.abs((run.certainty[i] as number) - certainty));
          row.ticks++;
          // The fixtures end at the trained ticks: a row that has them all leaves.
          if (row.ticks === golden.ticks) {
            batch.leave([id]);
            rows.delete(id);
          }
        });
        assert.ok(worst <= TOLERANCE, `step ${step}: a row differs from its golden tick by ${worst}`);
      }
    } finally {
      await batch.close();
    }
    assert.ok(ticked > STEPS / 2 && maxParked >= 3, `${ticked} tick runs, at most ${maxParked} rows parked`);
  });
});
