/**
 * `npm run loadtest -- [run] [options]` sweeps halting rules x load against a running server and
 * writes result.json, results.csv, summary.md and PNG plots; `npm run loadtest -- compare A B` puts
 * two result files side by side; `report A` redraws a result's table and plots. --help lists every option.
 *
 * Ctrl-C stops the run after dropping the point in progress and still writes what was measured; a
 * second Ctrl-C exits at once.
 */
import { writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { comparisonCsv, comparisonTable } from "./compareResults.ts";
import { readResult } from "./loadtestResult.ts";
import { type Command, parseCommand, USAGE, UsageError } from "./options.ts";
import { ProgressBar } from "./progressBar.ts";
import { writeResultFiles } from "./resultFiles.ts";
import { summaryMarkdown } from "./summaryMarkdown.ts";
import { runSweep } from "./sweep.ts";

async function main(command: Exclude<Command, "help">, argv: string[]): Promise<void> {
  if (command.kind === "compare") {
    const { before, after, csv } = command.options;
    const a = readResult(before);
    const b = readResult(after);
    process.stdout.write(`${comparisonTable(a, b, [before, after])}\n`);
    if (csv) writeFileSync(csv, comparisonCsv(a, b));
    return;
  }
  if (command.kind === "report") {
    const { file, out, plots } = command.options;
    const files = await writeResultFiles(readResult(file), out ?? dirname(file), plots);
    process.stdout.write(`wrote ${files.join(", ")}\n`);
    return;
  }
  const { options } = command;
  const abort = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    if (++interrupts > 1) process.exit(130);
    process.stderr.write("\ninterrupted: stopping after dropping the current point (Ctrl-C again to quit now)\n");
    abort.abort();
  };
  process.on("SIGINT", onSigint);
  try {
    // One rule per threshold (or target) and signal; targets are resolved once the run has started.
    const rules = (options.target?.values ?? options.thresholds).length * (options.signals?.length ?? 1);
    const points = options.calls.length * options.loads.length * rules;
    const progress = new ProgressBar(process.stderr, points, options.progress);
    const result = await runSweep(options, { progress, signal: abort.signal, argv });
    const files = await writeResultFiles(result, options.out, options.plots);
    process.stdout.write(summaryMarkdown(result));
    progress.log(`wrote ${files.join(", ")}`);
    if (result.interrupted) process.exitCode = 130;
  } finally {
    process.off("SIGINT", onSigint);
  }
}

const argv = process.argv.slice(2);
try {
  const command = parseCommand(argv, process.env);
  if (command === "help") {
    process.stdout.write(`${USAGE}\n`);
  } else {
    await main(command, argv);
  }
} catch (error) {
  if (error instanceof UsageError) {
    process.stderr.write(`loadtest: ${error.message}\n\n${USAGE}\n`);
    process.exit(2);
  }
  process.stderr.write(`loadtest: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
