/**
 * Closed-loop load for the throughput benchmarks, in its own process so that the benchmark's health
 * probes are not delayed by its event loop. Each caller sends a Classify, waits for the answer, and
 * sends the next. Requests are serialised once (by bench.ts) and responses are not decoded, so the
 * generator spends its CPU on gRPC itself, not on protobuf.
 *
 *   node --import tsx server/bench/loadGenerator.ts <port> <callers> <seconds> <requests.bin>
 *
 * requests.bin holds one or more serialised ClassifyRequests, each after its length (4 bytes, big
 * endian); caller i starts at request i and takes them in turn.
 *
 * Prints {"completed": n, "seconds": s, "errors": e} on stdout.
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import * as grpc from "@grpc/grpc-js";

const [port, callers, seconds, requestFile] = process.argv.slice(2);
const requests: Buffer[] = [];
const file = readFileSync(requestFile as string);
for (let at = 0; at < file.length; at += 4 + file.readUInt32BE(at))
  requests.push(file.subarray(at + 4, at + 4 + file.readUInt32BE(at)));
const identity = (buffer: Buffer) => buffer;
const Client = grpc.makeGenericClientConstructor(
  {
    Classify: {
      path: "/ctm.v1.CtmService/Classify",
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  "CtmService",
);
// A few connections, as a fleet of callers would have; grpc-js would otherwise share one.
const clients = Array.from(
  { length: 8 },
  () => new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }),
);
const classify = (client: grpc.Client, request: Buffer) =>
  new Promise<void>((resolve, reject) =>
    (client as unknown as Record<string, (r: Buffer, cb: (e: Error | null) => void) => void>).Classify?.(
      request,
      (error) => (error ? reject(error) : resolve()),
    ),
  );

const end = performance.now() + Number(seconds) * 1000;
let completed = 0;
let errors = 0;
const started = performance.now();
await Promise.all(
  Array.from({ length: Number(callers) }, async (_, i) => {
    const client = clients[i % clients.length] as grpc.Client;
    for (let next = i; performance.now() < end; next++) {
      try {
        await classify(client, requests[next % requests.length] as Buffer);
        completed++;
      } catch {
        errors++;
      }
    }
  }),
);
const elapsed = (performance.now() - started) / 1000;
for (const client of clients) client.close();
process.stdout.write(`${JSON.stringify({ completed, seconds: elapsed, errors })}\n`);
