/**
 * Closed-loop load for the throughput benchmarks, in its own process so that the benchmark's health
 * probes are not delayed by its event loop. Each caller sends a Classify, waits for the answer, and
 * sends the next. Requests are serialised once (by bench.ts) and responses are not decoded, so the
 * generator spends its CPU on gRPC itself, not on protobuf.
 *
 * The load runs in phases, back to back, each with its own requests: a benchmark that compares loads
 * interleaves them in short phases, so that background load on a shared machine hits them alike. With
 * a metrics port, the server's counters are read at every phase boundary.
 *
 *   node --import tsx server/bench/children/loadGenerator.ts <port> <callers> <metrics port or 0> <seconds>:<requests.bin>...
 *
 * Each requests.bin holds one or more serialised ClassifyRequests, each after its length (4 bytes, big
 * endian); caller i starts at request i and takes them in turn.
 *
 * Prints [{"file", "completed", "seconds", "errors", "cpuMs", "counters"}] on stdout, one entry per
 * phase (cpuMs: this process's own CPU time in it); a call counts for the phase in which it was sent.
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { grpcFrame, type Http2ClassifyClient, http2ClassifyClients } from "../parts/http2ClassifyClients.ts";
import { countersBetween, readServerCounters, type ServerCounters } from "../parts/serverCounters.ts";

const [port, callers, metricsPort, ...phaseArgs] = process.argv.slice(2);
const phases = phaseArgs.map((arg) => {
  const at = arg.indexOf(":");
  const file = arg.slice(at + 1);
  const bytes = readFileSync(file);
  const requests: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += 4 + bytes.readUInt32BE(i))
    requests.push(grpcFrame(bytes.subarray(i + 4, i + 4 + bytes.readUInt32BE(i))));
  return { file, seconds: Number(arg.slice(0, at)), requests };
});
const clients = http2ClassifyClients(port as string);

const results = phases.map((p) => ({
  file: p.file,
  completed: 0,
  errors: 0,
  cpuMs: 0,
  seconds: 0,
  counters: undefined as ServerCounters | undefined,
}));
let phase = 0;
let done = false;
const counters = async () => (Number(metricsPort) > 0 ? readServerCounters(Number(metricsPort)) : undefined);
const callersDone = Promise.all(
  Array.from({ length: Number(callers) }, async (_, i) => {
    const client = clients[i % clients.length] as Http2ClassifyClient;
    for (let next = i; !done; next++) {
      const mine = phase;
      const { requests } = phases[mine] as (typeof phases)[number];
      const result = results[mine] as (typeof results)[number];
      try {
        await client.classify(requests[next % requests.length] as Buffer);
        result.completed++;
      } catch {
        result.errors++;
      }
    }
  }),
);
let before = await counters();
for (const [i, p] of phases.entries()) {
  const started = performance.now();
  const cpu = process.cpuUsage();
  await new Promise((resolve) => setTimeout(resolve, p.seconds * 1000));
  const after = await counters();
  const used = process.cpuUsage(cpu);
  (results[i] as (typeof results)[number]).seconds = (performance.now() - started) / 1000;
  (results[i] as (typeof results)[number]).cpuMs = (used.user + used.system) / 1000;
  if (before && after) (results[i] as (typeof results)[number]).counters = countersBetween(before, after);
  before = after;
  if (i + 1 < phases.length) phase = i + 1;
  else done = true;
}
await callersDone;
for (const client of clients) client.close();
process.stdout.write(`${JSON.stringify(results)}\n`);
