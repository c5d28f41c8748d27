/**
 * Closed-loop load for `npm run bench:scale`, in its own process: `callers` loops of Classify, the
 * answers counted only inside a measurement window after a warm-up, and whatever is still running at
 * the window's end cancelled. loadGenerator.ts waits for the last requests instead, which at paper
 * sizes (seconds per request, 64 of them queued on an unbatched server) would add minutes.
 *
 *   node --import tsx server/bench/children/windowedLoad.ts <port> <callers> <warm-up s> <window s> <request.bin>
 *
 * Prints {"started": true} once its callers start (the warm-up begins), then
 * {"completed": n, "seconds": window, "errors": e} on stdout.
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import type * as grpc from "@grpc/grpc-js";
import { rawClassifyClients } from "../parts/rawClassifyClients.ts";

const [port, callers, warmUp, window, requestFile] = process.argv.slice(2);
const request = readFileSync(requestFile as string);
const clients = rawClassifyClients(port as string);
const calls = new Set<grpc.ClientUnaryCall>();
let done = false;
const classify = (client: grpc.Client) =>
  new Promise<void>((resolve, reject) => {
    const call = (
      client as unknown as Record<string, (r: Buffer, cb: (e: Error | null) => void) => grpc.ClientUnaryCall>
    ).Classify?.(request, (error) => {
      calls.delete(call as grpc.ClientUnaryCall);
      if (error) reject(error);
      else resolve();
    });
    if (call) calls.add(call);
  });

process.stdout.write(`${JSON.stringify({ started: true })}\n`);
const started = performance.now();
const from = started + Number(warmUp) * 1000;
const to = from + Number(window) * 1000;
let completed = 0;
let errors = 0;
const loops = Promise.all(
  Array.from({ length: Number(callers) }, async (_, i) => {
    const client = clients[i % clients.length] as grpc.Client;
    while (!done) {
      try {
        await classify(client);
        const now = performance.now();
        if (now >= from && now < to) completed++;
      } catch {
        if (!done) errors++;
      }
    }
  }),
);
await new Promise((resolve) => setTimeout(resolve, to - started));
done = true;
for (const call of calls) call.cancel();
await loops;
for (const client of clients) client.close();
process.stdout.write(`${JSON.stringify({ completed, seconds: Number(window), errors })}\n`);
