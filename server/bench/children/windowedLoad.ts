/**
 * Closed-loop load for `npm run bench:scale`, in its own process: `callers` loops of Classify (the
 * harness's closed loop), the answers counted only inside a measurement window after a warm-up, and
 * whatever is still running at the window's end cancelled. loadGenerator.ts waits for the last
 * requests instead, which at paper sizes (seconds per request, 64 of them queued on an unbatched
 * server) would add minutes.
 *
 *   node --import tsx server/bench/children/windowedLoad.ts <port> <callers> <warm-up s> <window s> <request.bin>
 *
 * Prints {"started": true} once its callers start (the warm-up begins), then
 * {"completed": n, "seconds": window, "errors": e} on stdout.
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { driveClosedLoop } from "../../../tools/harness/index.ts";
import { type RawClassifyClient, rawClassifyClients } from "../parts/rawClassifyClients.ts";

const [port, callers, warmUp, window, requestFile] = process.argv.slice(2);
const request = readFileSync(requestFile as string);
const clients = rawClassifyClients(port as string);
const end = new AbortController();

process.stdout.write(`${JSON.stringify({ started: true })}\n`);
const started = performance.now();
const from = started + Number(warmUp) * 1000;
const to = from + Number(window) * 1000;
// The window's end cancels the calls still running: they are neither answers nor errors.
const timer = setTimeout(() => end.abort(), to - started);
let completed = 0;
let errors = 0;
let next = 0;
await driveClosedLoop<RawClassifyClient, boolean>(Number(callers), {
  budget: { kind: "duration", seconds: Number(warmUp) + Number(window) },
  // Each call on the next connection in turn.
  nextSample: () => clients[next++ % clients.length] as RawClassifyClient,
  call: (client, _intendedAt, signal) =>
    client.classify(request, { signal }).then(
      () => true,
      () => false,
    ),
  onOutcome: (_client, answered) => {
    const now = performance.now();
    if (answered && now >= from && now < to) completed++;
    else if (!answered && !end.signal.aborted) errors++;
  },
  signal: end.signal,
});
clearTimeout(timer);
for (const client of clients) client.close();
process.stdout.write(`${JSON.stringify({ completed, seconds: Number(window), errors })}\n`);
