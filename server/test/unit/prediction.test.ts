/**
 * What a caller reads from one tick, for both output layouts the contract allows: [classes] (MNIST)
 * and [positions, classes] (parity's [16, 2]); and the checks on raw tensor inputs.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { checkTensorInput } from "../../src/engine/modelInput.ts";
import { describePrediction, topClassKey } from "../../src/engine/prediction.ts";
import { ServerError } from "../../src/engine/serverError.ts";
import type { InputSpec } from "../../src/model/manifest.ts";

const digits = { shape: [10], labels: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"] };
const parity = { shape: [4, 2], labels: ["even", "odd"] };

describe("predictions", () => {
  it("lists the top k classes, most probable first, ties by class index", () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(0, 0.1, 0.2, 0.5), { minLength: 10, maxLength: 10 }),
        fc.integer({ min: 1, max: 10 }),
        (p, k) => {
          const { topK, positions } = describePrediction(Float32Array.from(p), digits, k);
          assert.equal(positions.length, 0);
          assert.equal(topK.length, k);
          const expected = p
            .map((probability, index) => ({ index, probability: Math.fround(probability) }))
            .sort((a, b) => b.probability - a.probability || a.index - b.index);
          assert.deepEqual(
            topK.map((c) => [c.index, c.label, c.probability]),
            expected.slice(0, k).map((c) => [c.index, String(c.index), c.probability]),
          );
        },
      ),
    );
  });

  it("gives every position's top class for a [positions, classes] output", () => {
    const probabilities = Float32Array.from([0.9, 0.1, 0.3, 0.7, 0.5, 0.5, 0.2, 0.8]);
    const { topK, positions } = describePrediction(probabilities, parity, 2);
    assert.equal(topK.length, 0);
    assert.deepEqual(
      positions.map((p) => [p.position, p.label, p.probability]),
      [
        [0, "even", Math.fround(0.9)],
        [1, "odd", Math.fround(0.7)],
        [2, "even", 0.5],
        [3, "odd", Math.fround(0.8)],
      ],
    );
  });

  it("keys patience on the top class of every position", () => {
    assert.equal(topClassKey(Float32Array.from([0, 3, 1, 0, 0, 0, 0, 0, 0, 2]), digits), "1");
    assert.equal(topClassKey(Float32Array.from([2, 1, -1, 1, 0, 0, 3, 4]), parity), "0,1,0,1");
  });
});

describe("tensor inputs", () => {
  const spec: InputSpec = { kind: "tensor", shape: [2, 2], dtype: "float32", allowedValues: [-1, 1] };
  const invalid = (values: number[], shape: number[], message: RegExp) =>
    assert.throws(
      () => checkTensorInput({ shape, values }, spec, "parity"),
      (e: unknown) => e instanceof ServerError && e.code === "INVALID_ARGUMENT" && message.test(e.details),
    );

  it("accepts a tensor of the model's shape and values", () => {
    assert.deepEqual(
      Array.from(checkTensorInput({ shape: [2, 2], values: [1, -1, -1, 1] }, spec, "parity")),
      [1, -1, -1, 1],
    );
  });

  it("names the shape, the count, the index and the value that are wrong", () => {
    invalid([1, -1, -1, 1], [4], /^input\.tensor\.shape must be \[2, 2\] for model parity, got \[4\]$/);
    invalid([1, -1, -1], [2, 2], /^input\.tensor\.values must have 4 values for shape \[2, 2\], got 3$/);
    invalid([1, Number.NaN, -1, 1], [2, 2], /^input\.tensor\.values\[1\] is NaN; every value must be finite$/);
    invalid([1, -1, 0.5, 1], [2, 2], /^input\.tensor\.values\[2\] is 0\.5; model parity accepts only -1, 1$/);
  });
});
