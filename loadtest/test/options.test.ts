import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Command, parseCommand, type RunOptions, UsageError } from "../src/options.ts";

const NOW = new Date("2026-01-02T03:04:05.678Z");

function run(argv: string[], env: NodeJS.ProcessEnv = {}): RunOptions {
  const command = parseCommand(argv, env, NOW);
  assert.ok(command !== "help" && command.kind === "run");
  return command.options;
}

const fails = (argv: string[], message: RegExp) =>
  assert.throws(
    () => parseCommand(argv, {}, NOW),
    (e: unknown) => e instanceof UsageError && message.test(e.message),
  );

describe("loadtest options", () => {
  it("defaults to a closed-loop sweep of both call kinds", () => {
    const o = run([]);
    assert.equal(o.address, "127.0.0.1:50051");
    assert.deepEqual(o.thresholds, [0.5, 0.8, 0.9, 0.95, 0.99, 1]);
    assert.deepEqual(o.calls, ["unary", "stream"]);
    assert.deepEqual(o.loads, [
      { kind: "closed", concurrency: 1 },
      { kind: "closed", concurrency: 4 },
      { kind: "closed", concurrency: 16 },
    ]);
    assert.deepEqual(o.budget, { kind: "duration", seconds: 5 });
    assert.deepEqual(o.warmup, { kind: "duration", seconds: 1 });
    assert.equal(o.out, "loadtest/results/2026-01-02T030405Z");
    assert.equal(o.tls, null);
    assert.equal(o.token, undefined);
  });

  it("reads sweeps, budgets and the open loop", () => {
    const o = run([
      "run",
      "--thresholds=0.7,1",
      "--rate",
      "20,50",
      "--arrival",
      "constant",
      "--requests",
      "300",
      "--warmup",
      "0",
      "--calls",
      "stream",
    ]);
    assert.deepEqual(o.thresholds, [0.7, 1]);
    assert.deepEqual(o.loads, [
      { kind: "open", rate: 20, arrival: "constant" },
      { kind: "open", rate: 50, arrival: "constant" },
    ]);
    assert.deepEqual(o.budget, { kind: "requests", count: 300 });
    assert.equal(o.warmup, null);
    assert.deepEqual(o.calls, ["stream"]);
    assert.deepEqual(run(["--rate", "10", "--concurrency", "2"]).loads, [
      { kind: "closed", concurrency: 2 },
      { kind: "open", rate: 10, arrival: "poisson" },
    ]);
    assert.deepEqual(run(["--duration", "500ms", "--warmup-requests", "5"]).budget, {
      kind: "duration",
      seconds: 0.5,
    });
    assert.deepEqual(run(["--duration", "2m"]).budget, { kind: "duration", seconds: 120 });
  });

  it("takes TLS files and a token from flags or CTM_TOKEN", () => {
    const o = run(["--tls-ca", "ca.pem", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--tls-server-name", "ctm"]);
    assert.deepEqual(o.tls, { ca: "ca.pem", cert: "c.pem", key: "k.pem", serverName: "ctm" });
    assert.equal(run([], { CTM_TOKEN: "secret" }).token, "secret");
    assert.equal(run(["--token", "flag"], { CTM_TOKEN: "env" }).token, "flag");
    assert.equal(run([], { CTM_ADDRESS: "ctm:9000" }).address, "ctm:9000");
  });

  it("takes a target instead of thresholds", () => {
    assert.equal(run([]).target, null);
    assert.deepEqual(run(["--target-accuracy", "0.95"]).target, {
      kind: "accuracy",
      values: [0.95],
      confidence: 0,
      floor: 0,
    });
    assert.deepEqual(run(["--target-consistency=0.99,0.95", "--target-confidence", "0.9"]).target, {
      kind: "consistency",
      values: [0.99, 0.95],
      confidence: 0.9,
      floor: 0,
    });
    assert.equal(run(["--target-accuracy", "0.95,0.9", "--min-target", "0.8"]).target?.floor, 0.8);
    fails(
      ["--min-target", "0.8"],
      /--min-target is the floor of a target: give --target-accuracy or --target-consistency/,
    );
    fails(
      ["--target-accuracy", "0.95,0.9", "--min-target", "0.92"],
      /--min-target \(0\.92\) is a floor: it must not be above a target \(--target-accuracy 0\.95,0\.9\)/,
    );
    fails(["--target-accuracy", "1.2"], /--target-accuracy must be in \(0, 1\], got "1.2"/);
    fails(["--target-accuracy", "0.9", "--target-confidence", "1"], /--target-confidence must be in \(0, 1\), got "1"/);
    fails(["--target-confidence", "0.9"], /--target-confidence applies to a target/);
    fails(["--thresholds", "0.5", "--target-accuracy", "0.9"], /--thresholds and --target-accuracy exclude each other/);
    fails(
      ["--target-accuracy", "0.9", "--target-consistency", "0.9"],
      /--target-accuracy and --target-consistency exclude each other/,
    );
  });

  it("takes the signals to halt on, one or both", () => {
    assert.equal(run([]).signals, null);
    assert.deepEqual(run(["--signal", "halt"]).signals, ["halt"]);
    assert.deepEqual(run(["--signal=certainty,halt,halt"]).signals, ["certainty", "halt"]);
    fails(["--signal", "entropy"], /--signal takes certainty, halt, got "entropy"/);
    // Two signals are two rules to compare, even at one threshold or target.
    assert.equal(
      run(["--compare-thresholds", "--thresholds", "0.9", "--signal", "certainty,halt"]).compareThresholds,
      true,
    );
    assert.equal(
      run(["--compare-thresholds", "--target-accuracy", "0.95", "--signal", "certainty,halt"]).compareThresholds,
      true,
    );
    fails(
      ["--compare-thresholds", "--target-accuracy", "0.95", "--signal", "halt"],
      /--compare-thresholds needs at least 2 targets, or --signal certainty,halt; got --target-accuracy 0.95 on halt/,
    );
  });

  it("names the flag and the value in every error", () => {
    fails(["--thresholds", "0.5,1.5"], /--thresholds: thresholds must be in \(0, 1\], got "1.5"/);
    fails(["--thresholds", "0"], /got "0"/);
    fails(["--concurrency", "0"], /--concurrency must be a positive integer, got "0"/);
    fails(["--rate", "-3"], /--rate: rates must be positive/);
    fails(["--calls", "bidi"], /--calls takes unary, stream, got "bidi"/);
    fails(["--duration", "5h"], /--duration must be a positive time .* got "5h"/);
    fails(["--duration", "1s", "--requests", "5"], /--duration and --requests exclude each other/);
    fails(["--warmup", "1s", "--warmup-requests", "5"], /--warmup and --warmup-requests exclude each other/);
    fails(["--tls-cert", "c.pem"], /--tls-cert and --tls-key go together/);
    fails(["--tls-server-name", "x"], /--tls-server-name needs TLS/);
    fails(["--arrival", "constant"], /--arrival applies to the open loop/);
    fails(["--arrival", "bursty", "--rate", "1"], /--arrival must be one of constant, poisson, got "bursty"/);
    fails(["--bogus"], /unknown argument "--bogus"/);
    fails(["--address"], /--address needs a value/);
    fails(
      ["--compare-thresholds", "--thresholds", "0.9"],
      /--compare-thresholds needs at least 2 --thresholds, or --signal certainty,halt; got --thresholds 0.9/,
    );
    fails(["--metrics", "localhost:9464"], /--metrics must be an http:\/\/ URL, got "localhost:9464"/);
  });

  it("compares thresholds only when asked, with the server's metrics when given", () => {
    assert.equal(run([]).compareThresholds, false);
    assert.equal(run([]).metricsUrl, undefined);
    const o = run(["--compare-thresholds", "--metrics", "http://127.0.0.1:9464/metrics"]);
    assert.equal(o.compareThresholds, true);
    assert.equal(o.metricsUrl, "http://127.0.0.1:9464/metrics");
  });

  it("parses compare and report", () => {
    assert.deepEqual(parseCommand(["compare", "a.json", "b.json", "--csv", "d.csv"], {}), {
      kind: "compare",
      options: { before: "a.json", after: "b.json", csv: "d.csv" },
    } satisfies Command);
    assert.deepEqual(parseCommand(["report", "a.json", "--no-plots"], {}), {
      kind: "report",
      options: { file: "a.json", out: undefined, plots: false },
    } satisfies Command);
    fails(["compare", "a.json"], /compare takes two result files/);
    assert.equal(parseCommand(["--help"], {}), "help");
  });
});
