import assert from "node:assert/strict";
import { availableParallelism } from "node:os";
import { describe, it } from "node:test";
import { loadAverage, machineRecord } from "../machine.ts";

describe("machineRecord", () => {
  it("counts cores as the CPUs this process may use, as the server's defaults do", () => {
    const machine = machineRecord();
    assert.equal(machine.cores, availableParallelism());
    assert.ok(machine.cores >= 1);
  });

  it("names the CPU without the padding some kernels report, and the runtime", () => {
    const { cpu, node, memoryGiB, platform, arch } = machineRecord();
    assert.equal(cpu, cpu.trim());
    assert.ok(cpu.length > 0);
    assert.equal(node, process.version);
    assert.ok(memoryGiB >= 0 && Number.isInteger(memoryGiB));
    assert.equal(platform, process.platform);
    assert.equal(arch, process.arch);
  });

  it("reads the load average over 1, 5 and 15 minutes to two decimals", () => {
    const load = loadAverage();
    assert.equal(load.length, 3);
    for (const l of load) assert.equal(l, Number(l.toFixed(2)));
  });
});
