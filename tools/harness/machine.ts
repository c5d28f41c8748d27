/** What every benchmark records about the machine it ran on, so that a result names its machine. */
import { availableParallelism, cpus, loadavg, totalmem } from "node:os";

/** os.loadavg() (1, 5, 15 minutes), rounded: was the machine busy with something else? */
export function loadAverage(): number[] {
  return loadavg().map((l) => Number(l.toFixed(2)));
}

export function benchMachine() {
  return {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    loadAverageAtStart: loadAverage(),
  };
}
