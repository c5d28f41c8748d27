/**
 * What every result file records about the machine it ran on, so that a result names its machine and
 * two results say whether they are comparable. Cores are counted one way everywhere:
 * os.availableParallelism(), the CPUs this process may run on (a container's or taskset's limit),
 * which is what the server's default thread and decode counts use too.
 */
import { arch, availableParallelism, cpus, loadavg, platform, totalmem } from "node:os";

export interface MachineRecord {
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  platform: string;
  arch: string;
  /** os.loadavg() (1, 5, 15 minutes) when the record was taken: was the machine busy with something else? */
  loadAverageAtStart: number[];
}

/** os.loadavg() (1, 5, 15 minutes), rounded: was the machine busy with something else? */
export function loadAverage(): number[] {
  return loadavg().map((l) => Number(l.toFixed(2)));
}

export function machineRecord(): MachineRecord {
  return {
    cpu: cpus()[0]?.model.trim() ?? "unknown",
    cores: availableParallelism(),
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    platform: platform(),
    arch: arch(),
    loadAverageAtStart: loadAverage(),
  };
}
