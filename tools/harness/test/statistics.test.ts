import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { correctFraction, linearFit, mean, median, percentile, percentileOfCounts, sum } from "../statistics.ts";

const samples = fc.array(fc.double({ min: -1e6, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 60 });
const ascending = (values: number[]) => [...values].sort((a, b) => a - b);

describe("median", () => {
  it("is the middle value, or the mean of the two middle ones", () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.ok(Number.isNaN(median([])));
  });

  it("has as many values at or below it as at or above it, whatever the order", () => {
    fc.assert(
      fc.property(samples, (values) => {
        const m = median(values);
        assert.ok(values.filter((v) => v <= m).length >= values.length / 2);
        assert.ok(values.filter((v) => v >= m).length >= values.length / 2);
        assert.equal(median([...values].reverse()), m);
      }),
    );
  });
});

describe("percentile", () => {
  it("is the nearest rank: the smallest sample with at least p% of the samples at or below it", () => {
    fc.assert(
      fc.property(samples, fc.double({ min: 0, max: 100, noNaN: true }), (values, p) => {
        const sorted = ascending(values);
        const at = percentile(values, p);
        assert.ok(values.includes(at));
        assert.ok(sorted.filter((v) => v <= at).length >= (p / 100) * values.length);
        const below = sorted.filter((v) => v < at);
        assert.ok(below.length < Math.max(1, (p / 100) * values.length));
      }),
    );
  });

  it("reads the minimum at 0, the maximum at 100, and NaN of nothing", () => {
    assert.equal(percentile([5, 1, 9], 0), 1);
    assert.equal(percentile([5, 1, 9], 100), 9);
    assert.equal(percentile([1, 2, 3, 4], 50), 2);
    assert.equal(
      percentile(
        [...Array(100).keys()].map((i) => i + 1),
        99,
      ),
      99,
    );
    assert.ok(Number.isNaN(percentile([], 50)));
  });
});

describe("percentileOfCounts", () => {
  it("is the nearest-rank percentile of the values the counts stand for", () => {
    fc.assert(
      fc.property(
        fc.array(fc.nat(20), { minLength: 1, maxLength: 30 }).filter((c) => c.some((n) => n > 0)),
        fc.double({ min: 0, max: 100, noNaN: true }),
        (counts, p) => {
          const values = counts.flatMap((n, i) => new Array<number>(n).fill(i + 1));
          assert.equal(percentileOfCounts(counts, p), percentile(values, p));
        },
      ),
    );
  });

  it("is 0 for no values", () => {
    assert.equal(percentileOfCounts([0, 0, 0], 50), 0);
  });
});

describe("mean and sum", () => {
  it("add up", () => {
    assert.equal(sum([1, 2, 3.5]), 6.5);
    assert.equal(sum([]), 0);
    assert.equal(mean([1, 2, 6]), 3);
    assert.ok(Number.isNaN(mean([])));
  });
});

describe("correctFraction", () => {
  it("scores multi-position answers by the fraction of positions right", () => {
    assert.equal(correctFraction([1, 0, 1, 1], [1, 1, 1, 0]), 0.5);
    assert.equal(correctFraction([2], [2]), 1);
    assert.equal(correctFraction([1, 0], [1]), 0, "a wrong number of positions is wrong");
  });
});

describe("linearFit", () => {
  it("recovers a line exactly, with R^2 1", () => {
    fc.assert(
      fc.property(
        fc.double({ min: -100, max: 100, noNaN: true }),
        fc.double({ min: -100, max: 100, noNaN: true }).filter((b) => Math.abs(b) > 1e-3),
        (a, b) => {
          const fit = linearFit([0, 1, 2, 5, 9].map((x) => [x, a + b * x] as const));
          assert.ok(Math.abs(fit.slope - b) < 1e-9 * (1 + Math.abs(b)));
          assert.ok(Math.abs(fit.intercept - a) < 1e-7 * (1 + Math.abs(a) + Math.abs(b)));
          assert.ok(Math.abs(fit.r2 - 1) < 1e-9);
          assert.equal(fit.points, 5);
        },
      ),
    );
  });

  it("says NaN where R^2 means nothing: two points, or no spread in y", () => {
    assert.ok(
      Number.isNaN(
        linearFit([
          [0, 1],
          [1, 2],
        ]).r2,
      ),
    );
    assert.ok(
      Number.isNaN(
        linearFit([
          [0, 1],
          [1, 1],
          [2, 1],
        ]).r2,
      ),
    );
  });
});
