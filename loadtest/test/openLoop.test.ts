/**
 * The open loop keeps its schedule whatever the server (or the client's own event loop) does, and
 * charges every request from its scheduled time: a stall shows up in the latency of each request
 * that was due during it. The callers here are fakes, so this runs without a server.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  arrivalSchedule,
  type Caller,
  type CallOutcome,
  driveClosedLoop,
  driveOpenLoop,
  type Sample,
  seededRandom,
} from "../../tools/harness/index.ts";

const sample: Sample = { name: "x", input: { tensor: { shape: [1], values: [0] } }, label: [0] };

const answer = (latencyMs: number): CallOutcome => ({
  ok: true,
  latencyMs,
  firstTickMs: null,
  ticksUsed: 1,
  haltReason: "THRESHOLD",
  prediction: [0],
});

/** Answers at once: latency is only the wait between the scheduled and the actual send. */
const instant: Caller = async (_sample, intendedAt) => answer(performance.now() - intendedAt);

function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // Blocks the event loop on purpose: nothing else can be sent meanwhile.
  }
}

describe("arrival schedules", () => {
  it("spaces constant arrivals exactly 1/rate apart from 0", () => {
    const next = arrivalSchedule(250, "constant", 1);
    assert.deepEqual(
      Array.from({ length: 5 }, () => next()),
      [0, 4, 8, 12, 16],
    );
  });

  it("draws Poisson gaps with mean 1/rate and the spread of an exponential, the same for the same seed", () => {
    const draw = (seed: number) => {
      const next = arrivalSchedule(100, "poisson", seed);
      const times = Array.from({ length: 20001 }, () => next());
      return times.slice(1).map((t, i) => t - (times[i] as number));
    };
    const gaps = draw(7);
    const mean = gaps.reduce((a, b) => a + b, 0) / gaps.length;
    const sd = Math.sqrt(gaps.reduce((a, g) => a + (g - mean) ** 2, 0) / gaps.length);
    assert.ok(Math.abs(mean - 10) < 0.3, `mean gap ${mean} ms`);
    assert.ok(Math.abs(sd - 10) < 0.5, `gap standard deviation ${sd} ms (exponential: equal to the mean)`);
    assert.ok(gaps.every((g) => g >= 0 && Number.isFinite(g)));
    assert.deepEqual(draw(7).slice(0, 50), gaps.slice(0, 50));
    assert.notDeepEqual(draw(8).slice(0, 50), gaps.slice(0, 50));
  });

  it("seededRandom stays in [0, 1)", () => {
    const random = seededRandom(42);
    for (let i = 0; i < 10000; i++) {
      const r = random();
      assert.ok(r >= 0 && r < 1);
    }
  });
});

describe("the open loop", () => {
  it("sends exactly the requests scheduled within a duration", async () => {
    let calls = 0;
    const drive = await driveOpenLoop(100, "constant", 1, {
      budget: { kind: "duration", seconds: 0.2 },
      call: async (s, at) => {
        calls++;
        return instant(s, at);
      },
      nextSample: () => sample,
      onOutcome: () => {},
      signal: new AbortController().signal,
    });
    // Due at 0, 10, ..., 190 ms.
    assert.equal(drive.sent, 20);
    assert.equal(calls, 20);
    assert.ok(Math.abs((drive.offeredRps ?? 0) - 100) < 1e-9);
  });

  it("charges a stall to every request due during it (no coordinated omission)", async () => {
    const latencies: number[] = [];
    let first = true;
    // 200 requests/s (one due every 5 ms); the first call blocks the client for 150 ms.
    await driveOpenLoop(200, "constant", 1, {
      budget: { kind: "requests", count: 40 },
      call: async (s, intendedAt) => {
        if (first) {
          first = false;
          busyWait(150);
        }
        return instant(s, intendedAt);
      },
      nextSample: () => sample,
      onOutcome: (_s, outcome) => latencies.push(outcome.latencyMs),
      signal: new AbortController().signal,
    });
    assert.equal(latencies.length, 40);
    // Request k (k = 1..29) was due at 5k ms but could only leave at about 150 ms.
    const late = latencies.filter((l) => l >= 50).length;
    assert.ok(late >= 15, `only ${late} requests show the stall: ${latencies.map((l) => l.toFixed(0)).join(" ")}`);
    assert.ok(Math.max(...latencies) >= 140, `max ${Math.max(...latencies)} ms`);
  });

  it("stops sending when aborted and waits for what is in flight", async () => {
    const abort = new AbortController();
    let outcomes = 0;
    const started = performance.now();
    setTimeout(() => abort.abort(), 50);
    const drive = await driveOpenLoop(1000, "constant", 1, {
      budget: { kind: "duration", seconds: 60 },
      call: async (s, at) => {
        await new Promise((resolve) => setTimeout(resolve, 20));
        return instant(s, at);
      },
      nextSample: () => sample,
      onOutcome: () => {
        outcomes++;
      },
      signal: abort.signal,
    });
    assert.ok(performance.now() - started < 5000, "returned long before the 60 s budget");
    assert.ok(drive.sent > 0);
    assert.equal(outcomes, drive.sent, "every request sent was waited for");
  });
});

describe("the closed loop", () => {
  it("keeps `concurrency` requests in flight and stops at the request budget", async () => {
    let inFlight = 0;
    let peak = 0;
    const drive = await driveClosedLoop(3, {
      budget: { kind: "requests", count: 10 },
      call: async (s, at) => {
        peak = Math.max(peak, ++inFlight);
        await new Promise((resolve) => setTimeout(resolve, 5));
        inFlight--;
        return instant(s, at);
      },
      nextSample: () => sample,
      onOutcome: () => {},
      signal: new AbortController().signal,
    });
    assert.equal(drive.sent, 10);
    assert.equal(peak, 3);
    assert.equal(drive.offeredRps, null);
  });
});
