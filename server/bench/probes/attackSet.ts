/**
 * The attack set against a server with default flags, all at once, measuring what it costs the server:
 * its resident memory (from /proc/<pid>/status, worker threads and onnxruntime included) before,
 * at the peak and after, a health check on the gRPC port every 100 ms throughout, what each attack got
 * back, and how long each attacker's sockets stayed open on the server's side against the timeout that
 * should close them. docs/reliability.md records the latest run.
 *
 *   node --import tsx server/bench/probes/attackSet.ts [--out out/attack/attack.json] [--wait-idle]
 *
 * The server is npm start's entry point in its own process, every flag at its default except the
 * ports (free ones; the health port, off by default, is turned on so that it can be attacked).
 * --wait-idle also waits out --max-connection-idle-ms (5 min) for the connections that answer pings;
 * --only runs some of the attacks (by their names in ATTACKS below, and "deadlines").
 *
 * The attacks (each a defect an outside run found; the sizes are scaled to a 2-core machine):
 *  1. 1,200 Watches of distinct 256-character names, cancelled, on the gRPC port and the health port;
 *     100 Watches and 20 Checks of 1 MB names.
 *  2. 200 connections ended by nghttp2's own GOAWAY and 100 that never speak, to each of those ports.
 *  3. 4 ModelStreamInfer streams that send 700 requests each and read nothing.
 *  4. 6 connections x 256 streams, each sending 900 KB of a 1 MB message and then nothing.
 *  5. 600 playground uploads declaring 1.45 MB and sending 64 KB; 600 abandoned after 1 KB.
 *  6. 40 ModelInfer calls of six 7000 x 7000 PNGs and 40 of six 4096 x 4096 PNGs, two a second,
 *     beside 40 ordinary Classify calls.
 *  7. 30 requests with deadline_ms 3,000,000,000 queued behind 200 others (first, on its own, so that
 *     the queue they wait in is theirs).
 *  8. 100 ModelInfer calls with a 1,000,000-entry shape.
 *  9. 500 GET /api/models; requests for another Host and from another Origin.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as grpc from "@grpc/grpc-js";
import sharp from "sharp";
import {
  attack,
  BAD_OPENINGS,
  createCtmClient,
  createHealthClient,
  createOipClient,
  freePort,
  grpcMessage,
  type HealthClient,
  rawCall,
  StalledClient,
  scrapeMetrics,
  serverSockets,
  startServerProcess,
  sumOf,
} from "../../../tools/harness/index.ts";
import { loadAverage, machineRecord } from "../../../tools/harness/machine.ts";
import { median, percentile } from "../../../tools/harness/statistics.ts";
import { loadInferenceProtocol } from "../../src/transport/oip/oipProtocol.ts";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const MODEL = "mnist-ctm";
const MiB = 2 ** 20;
/** The defaults the attacks are held to (config.ts). */
const KEEPALIVE_CLOSE_S = 20 + 10;
const RECEIVE_TIMEOUT_S = 30;
const WRITE_IDLE_S = 30;
const IDLE_CLOSE_S = 300;

const { values: args } = parseArgs({
  options: {
    out: { type: "string", default: "out/attack/attack.json" },
    "wait-idle": { type: "boolean", default: false },
    only: { type: "string" },
    help: { type: "boolean", default: false },
  },
});
if (args.help) {
  console.log(
    "Usage: node --import tsx server/bench/probes/attackSet.ts [--out out/attack/attack.json] [--wait-idle] [--only deadlines,watchGrpc,...]",
  );
  process.exit(0);
}

const golden = JSON.parse(readFileSync(join(REPO, "models", MODEL, "1", "golden.json"), "utf8")) as {
  cases: { input_shape: number[]; input: number[] }[];
};
const tensor = golden.cases[0] as { input_shape: number[]; input: number[] };

// ---------------------------------------------------------------- the server and what we watch
const [httpPort, healthPort] = [await freePort(), await freePort()];
const machine = machineRecord();
const startedAt = new Date().toISOString();
const server = await startServerProcess(REPO, ["--http-port", String(httpPort), "--health-port", String(healthPort)]);
const grpcAddress = `127.0.0.1:${server.port}`;
const rssMiB = () => {
  const status = readFileSync(`/proc/${server.pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
};
const ctm = createCtmClient(grpcAddress);
/** Every call of the attack set has a minute to answer. */
const withinAMinute = () => ({ deadline: Date.now() + 60_000 });
const codeOf = (promise: Promise<unknown>) =>
  promise.then(
    () => "OK",
    (error: grpc.ServiceError) => grpc.status[error.code] ?? String(error.code),
  );
const tally = (codes: string[]) => {
  const counts: Record<string, number> = {};
  for (const code of codes) counts[code] = (counts[code] ?? 0) + 1;
  return counts;
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** What the attacker's calls or connections ended with so far ("still open": not ended yet). */
async function settledSoFar(ends: Promise<string>[]): Promise<Record<string, number>> {
  const now = await Promise.all(ends.map((end) => Promise.race([end, sleep(0).then(() => "still open")])));
  return tally(now);
}
/** `work`, or undefined if it has not settled in 60 s (an attack must not hang the run). */
const bounded = <T>(work: Promise<T>) => Promise.race([work, sleep(60_000).then(() => undefined)]);

// Warm up (a few ordinary calls), then the baseline: the median of eight samples.
for (let i = 0; i < 20; i++)
  await ctm.Classify({ model: MODEL, tensor: { shape: tensor.input_shape, values: tensor.input } }, withinAMinute());
await sleep(2000);
const baselineSamples: number[] = [];
for (let i = 0; i < 8; i++) {
  baselineSamples.push(rssMiB());
  await sleep(250);
}
const baseline = median(baselineSamples);
let peak = baseline;
const memory: { s: number; rssMiB: number }[] = [];
const t0 = performance.now();
const seconds = () => (performance.now() - t0) / 1000;
const sampler = setInterval(() => {
  const rss = rssMiB();
  peak = Math.max(peak, rss);
  memory.push({ s: Number(seconds().toFixed(1)), rssMiB: Number(rss.toFixed(1)) });
}, 250);
const probeHealth = createHealthClient(grpcAddress);
const healthMs: number[] = [];
let healthFailures = 0;
const healthTimer = setInterval(() => {
  const started = performance.now();
  probeHealth.Check({ service: "" }).then(
    () => healthMs.push(performance.now() - started),
    () => healthFailures++,
  );
}, 100);

const sockets = (port: number) => serverSockets(port);
const socketBaseline = { grpc: sockets(server.port), health: sockets(healthPort), http: sockets(httpPort) };
const attackers: net.Socket[] = [];
const sessions: http2.ClientHttp2Session[] = [];

// ---------------------------------------------------------------- the attacks
async function watchFlood(port: number) {
  // Four connections of their own (grpc-js would otherwise share one, at 256 streams at once).
  const clients = Array.from({ length: 4 }, () =>
    createHealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      "grpc.use_local_subchannel_pool": 1,
    }),
  );
  /** A Watch held open until `stop` aborts it; resolves with its first status name or its error's code. */
  const firstOfWatch = async (client: HealthClient, service: string, stop: AbortController) => {
    try {
      const next = await client.Watch({ service }, { signal: stop.signal })[Symbol.asyncIterator]().next();
      return next.done ? "?" : "OK";
    } catch (error) {
      return grpc.status[(error as grpc.ServiceError).code] ?? "?";
    }
  };
  // All 600 Watches open at once, then all cancelled.
  const stops = Array.from({ length: 600 }, () => new AbortController());
  await Promise.all(
    clients.flatMap((client, c) =>
      Array.from({ length: 150 }, (_, i) =>
        firstOfWatch(client, `${c}-${i}-`.padEnd(256, "w"), stops[c * 150 + i] as AbortController),
      ),
    ),
  );
  for (const stop of stops) stop.abort();
  const huge = "h".repeat(MiB);
  const longWatch = await Promise.all(
    Array.from({ length: 100 }, async (_, i) => {
      const stop = new AbortController();
      const code = await firstOfWatch(clients[i % 4] as HealthClient, huge, stop);
      stop.abort();
      return code;
    }),
  );
  let longestDetails = 0;
  const longCheck = await Promise.all(
    Array.from({ length: 20 }, () =>
      (clients[0] as HealthClient).Check({ service: huge }).then(
        () => "OK",
        (error: grpc.ServiceError) => {
          longestDetails = Math.max(longestDetails, error.details.length);
          return grpc.status[error.code] ?? "?";
        },
      ),
    ),
  );
  for (const client of clients) client.close();
  return { watched: 600, watch1MB: tally(longWatch), check1MB: tally(longCheck), longestDetailsChars: longestDetails };
}

async function brokenConnections(port: number, name: string) {
  const openings = Object.values(BAD_OPENINGS).flatMap((bytes) => Array.from({ length: 50 }, () => bytes));
  for (let i = 0; i < openings.length; i += 25) {
    await Promise.all(openings.slice(i, i + 25).map((bytes) => attack(port, bytes, { limitMs: 300 })));
  }
  for (let i = 0; i < 100; i++) {
    const socket = net.connect(port, "127.0.0.1");
    socket.on("error", () => {});
    attackers.push(socket);
  }
  return { port: name, broken: openings.length, silent: 100 };
}

async function streamInferNoReads() {
  const serialize = loadInferenceProtocol().inferenceService.ModelStreamInfer?.requestSerialize as (
    r: unknown,
  ) => Buffer;
  const request = grpcMessage(
    serialize({
      model_name: MODEL,
      id: "i".repeat(1024),
      inputs: [{ name: "input", datatype: "FP32", shape: [1, ...tensor.input_shape] }],
      raw_input_contents: [Buffer.from(new Float32Array(tensor.input).buffer)],
    }),
  );
  const clients = await Promise.all(Array.from({ length: 4 }, () => StalledClient.connect("127.0.0.1", server.port)));
  const streams = clients.map((client) => {
    const stream = client.open(grpcAddress, "/inference.GRPCInferenceService/ModelStreamInfer");
    for (let i = 0; i < 700; i++) client.send(stream, request);
    return { client, stream };
  });
  return async () => ({
    sentMiB: Number(((700 * 4 * request.length) / MiB).toFixed(1)),
    unsentMiB: Number((streams.reduce((sum, s) => sum + s.client.unsent(s.stream), 0) / MiB).toFixed(1)),
    streamsReset: streams.filter((s) => s.client.resets.has(s.stream)).length,
  });
}

async function partialMessages() {
  const chunk = Buffer.alloc(64 * 1024);
  const outcomes: Promise<string>[] = [];
  for (let c = 0; c < 6; c++) {
    const session = http2.connect(`http://${grpcAddress}`);
    session.on("error", () => {});
    sessions.push(session);
    for (let s = 0; s < 256; s++) {
      const stream = session.request({
        ":method": "POST",
        ":path": "/ctm.v1.CtmService/Classify",
        "content-type": "application/grpc",
        te: "trailers",
      });
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(1_000_000, 1);
      stream.write(prefix);
      outcomes.push(
        new Promise((resolve) => {
          // Settled by its status: Node keeps a client stream open, after the server's RST_STREAM
          // NO_ERROR, for as long as the client has not finished writing, and this client never does.
          const status = (h: http2.IncomingHttpHeaders) => {
            if (h["grpc-status"] !== undefined) resolve(grpc.status[Number(h["grpc-status"])] ?? "?");
          };
          stream.on("response", status);
          stream.on("trailers", status);
          stream.on("data", () => {});
          stream.on("error", () => {});
          stream.on("close", () => resolve(`closed without a status (RST_STREAM ${stream.rstCode})`));
          // 900 KB of the message, as flow control lets it go; then nothing.
          (async () => {
            for (let sent = 0; sent < 900_000 && !stream.closed; sent += chunk.length) {
              if (!stream.write(chunk)) await new Promise((r) => stream.once("drain", r).once("close", r));
            }
          })();
        }),
      );
    }
  }
  // The sessions answer pings, so once their streams end they are closed by the idle timeout.
  return async () => settledSoFar(outcomes);
}

function rawHttp(head: string, body: Buffer, then: "hold" | "abandon"): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(httpPort, "127.0.0.1", () => {
      socket.write(`POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1:${httpPort}\r\n${head}\r\n`);
      socket.write(body);
      if (then === "abandon") setTimeout(() => socket.destroy(), 100);
    });
    let text = "";
    socket.on("data", (c: Buffer) => (text += c.toString()));
    socket.on("error", () => {});
    socket.on("close", () =>
      resolve(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? (then === "abandon" ? "abandoned" : "closed")),
    );
    attackers.push(socket);
  });
}

async function playgroundBodies() {
  const slow = Array.from({ length: 600 }, () =>
    rawHttp("Content-Length: 1450000\r\n", Buffer.alloc(64 * 1024, 32), "hold"),
  );
  const abandoned = await Promise.all(
    Array.from({ length: 600 }, () => rawHttp("Content-Length: 100000\r\n", Buffer.alloc(1024, 32), "abandon")),
  );
  return async () => ({ slow: await settledSoFar(slow), abandoned: tally(abandoned) });
}

async function largeImages() {
  const png = (side: number) =>
    sharp({ create: { width: side, height: side, channels: 3, background: { r: 255, g: 255, b: 255 } } })
      .composite([
        {
          input: { create: { width: 800, height: 1200, channels: 3, background: { r: 0, g: 0, b: 0 } } },
          left: 1500,
          top: 1400,
        },
      ])
      .png({ compressionLevel: 9 })
      .toBuffer();
  const [huge, large] = [await png(7000), await png(4096)];
  const client = createOipClient(grpcAddress);
  const calls: Promise<string>[] = [];
  const probes: Promise<string>[] = [];
  for (let i = 0; i < 40; i++) {
    for (const image of [huge, large]) {
      calls.push(
        codeOf(
          client.ModelInfer(
            {
              model_name: MODEL,
              inputs: [
                { name: "image", datatype: "BYTES", shape: [6, 1], contents: { bytes_contents: Array(6).fill(image) } },
              ],
            },
            withinAMinute(),
          ),
        ),
      );
    }
    probes.push(
      codeOf(
        ctm.Classify({ model: MODEL, tensor: { shape: tensor.input_shape, values: tensor.input } }, withinAMinute()),
      ),
    );
    await sleep(500);
  }
  const result = { calls: tally(await Promise.all(calls)), probes: tally(await Promise.all(probes)) };
  client.close();
  return result;
}

async function farDeadlines() {
  const full = {
    model: MODEL,
    tensor: { shape: tensor.input_shape, values: tensor.input },
    halt_policy: { min_ticks: 15, max_ticks: 15 },
  };
  const queue = Array.from({ length: 200 }, () => codeOf(ctm.Classify(full, withinAMinute())));
  const far = Array.from({ length: 30 }, () =>
    codeOf(ctm.Classify({ ...full, halt_policy: { deadline_ms: 3_000_000_000 } }, withinAMinute())),
  );
  return { queued: tally(await Promise.all(queue)), far: tally(await Promise.all(far)) };
}

async function hugeShapes() {
  // Encoded once, sent as bytes: encoding a million int64s per call would cost the attacker more than
  // it costs the server now.
  const serialize = loadInferenceProtocol().inferenceService.ModelInfer?.requestSerialize as (r: unknown) => Buffer;
  const body = grpcMessage(
    serialize({
      model_name: MODEL,
      inputs: [{ name: "input", datatype: "FP32", shape: new Array(1_000_000).fill(1) }],
    }),
  );
  const session = http2.connect(`http://${grpcAddress}`);
  session.on("error", () => {});
  const codes: string[] = [];
  for (let i = 0; i < 100; i += 10) {
    const replies = await Promise.all(
      Array.from({ length: 10 }, () => bounded(rawCall(session, "/inference.GRPCInferenceService/ModelInfer", body))),
    );
    codes.push(
      ...replies.map((reply) => (reply ? (grpc.status[reply.status] ?? String(reply.status)) : "no answer in 60 s")),
    );
  }
  session.close();
  return tally(codes);
}

async function playgroundLow() {
  const base = `http://127.0.0.1:${httpPort}`;
  const models = await Promise.all(
    Array.from({ length: 500 }, () => fetch(`${base}/api/models`).then((r) => r.status)),
  );
  const rebound = await new Promise<number>((resolve) => {
    const socket = net.connect(httpPort, "127.0.0.1", () =>
      socket.write(`GET /api/models HTTP/1.1\r\nHost: evil.example:${httpPort}\r\nConnection: close\r\n\r\n`),
    );
    let text = "";
    socket.on("data", (c: Buffer) => (text += c.toString()));
    socket.on("close", () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
  });
  const foreign = await fetch(`${base}/api/classify`, {
    method: "POST",
    headers: { origin: "http://evil.example" },
    body: "{}",
  });
  return { models: tally(models.map(String)), foreignHost: rebound, foreignOrigin: foreign.status };
}

// ---------------------------------------------------------------- run them all at once
console.log(`server pid ${server.pid}, baseline RSS ${baseline.toFixed(1)} MiB; attacking...`);
/** Each attack by name; `--only` runs some of them (to see what each costs on its own). */
const ATTACKS: Record<string, () => Promise<unknown>> = {
  watchGrpc: () => watchFlood(server.port),
  watchHealth: () => watchFlood(healthPort),
  brokenGrpc: () => brokenConnections(server.port, "gRPC"),
  brokenHealth: () => brokenConnections(healthPort, "health port"),
  streamInfer: streamInferNoReads,
  partialMessages,
  playground: playgroundBodies,
  images: largeImages,
  shapes: hugeShapes,
  playgroundLow,
};
const chosen = args.only ? (args.only as string).split(",") : ["deadlines", ...Object.keys(ATTACKS)];
for (const name of chosen) if (name !== "deadlines" && !ATTACKS[name]) throw new Error(`--only: no attack ${name}`);
const sent: Record<string, unknown> = {};
if (chosen.includes("deadlines")) {
  sent.deadlines = await farDeadlines();
  console.log(`  deadlines sent at ${seconds().toFixed(0)} s`);
}
await Promise.all(
  Object.entries(ATTACKS)
    .filter(([name]) => chosen.includes(name))
    .map(async ([name, run]) => {
      sent[name] = await run();
      console.log(`  ${name} sent at ${seconds().toFixed(0)} s`);
    }),
);
const attackEndS = seconds();
console.log(`attacks sent by ${attackEndS.toFixed(0)} s; waiting for their timeouts...`);

/**
 * Each port's server sockets must be back to where they were once the longest timeout that applies has
 * passed since the attack: the keepalive (30 s) for connections that do not answer pings, the receive
 * and write-idle limits (30 s) for calls; the six partial-message connections answer pings, so only
 * the idle timeout (5 min, --wait-idle) closes them once their streams are gone.
 */
const PINGING = 6;
const portsOpen = () => ({ grpc: sockets(server.port), health: sockets(healthPort), http: sockets(httpPort) });
const checkpoints: { afterAttackS: number; sockets: ReturnType<typeof portsOpen> }[] = [];
const waitS = (args["wait-idle"] ? IDLE_CLOSE_S : Math.max(KEEPALIVE_CLOSE_S, RECEIVE_TIMEOUT_S, WRITE_IDLE_S)) + 15;
const backAt: Record<string, number | undefined> = {};
while (seconds() - attackEndS < waitS) {
  const afterAttackS = Number((seconds() - attackEndS).toFixed(0));
  const open = portsOpen();
  checkpoints.push({ afterAttackS, sockets: open });
  console.log(`  +${afterAttackS} s: server sockets ${JSON.stringify(open)}`);
  if (open.health <= socketBaseline.health) backAt.health ??= afterAttackS;
  if (open.http <= socketBaseline.http) backAt.http ??= afterAttackS;
  if (open.grpc <= socketBaseline.grpc + PINGING) backAt.grpcButPinging ??= afterAttackS;
  if (open.grpc <= socketBaseline.grpc) backAt.grpc ??= afterAttackS;
  await sleep(5000);
}
// Some attacks report when asked (what their connections got by the end of the wait).
const outcomes: Record<string, unknown> = {};
for (const [name, value] of Object.entries(sent)) outcomes[name] = typeof value === "function" ? await value() : value;
clearInterval(sampler);
clearInterval(healthTimer);
for (const socket of attackers) socket.destroy();
for (const session of sessions) session.destroy();
await sleep(2000);
const after = rssMiB();
const metrics = await scrapeMetrics(`http://127.0.0.1:${server.metricsPort}/metrics`);
const counted = (method: string, status: string) => sumOf(metrics, "ctm_requests_total", { method, status });
probeHealth.close();
ctm.close();
await server.stop();

const pct = (p: number) => Number((healthMs.length === 0 ? 0 : percentile(healthMs, p * 100)).toFixed(1));
const result = {
  command: `node --import tsx server/bench/probes/attackSet.ts${args["wait-idle"] ? " --wait-idle" : ""}${args.only ? ` --only ${args.only}` : ""}`,
  startedAt,
  machine,
  loadAverageAtEnd: loadAverage(),
  rssMiB: {
    baseline: Number(baseline.toFixed(1)),
    peak: Number(peak.toFixed(1)),
    after: Number(after.toFixed(1)),
    peakGrowth: Number((peak - baseline).toFixed(1)),
    bound: 300,
  },
  healthCheckMs: { checks: healthMs.length, failures: healthFailures, p50: pct(0.5), p99: pct(0.99), max: pct(1) },
  attackSeconds: Number(attackEndS.toFixed(1)),
  socketBaseline,
  /** Seconds after the attack by which each port's sockets were back to the baseline (undefined: not within the wait). */
  socketsBackAfterS: backAt,
  socketsAfterAttack: checkpoints,
  outcomes,
  httpClassifyStream: {
    CANCELLED: counted("HttpClassifyStream", "CANCELLED"),
    INTERNAL: counted("HttpClassifyStream", "INTERNAL"),
  },
  memory,
};
mkdirSync(dirname(args.out as string), { recursive: true });
writeFileSync(args.out as string, JSON.stringify(result, null, 2));
const last = checkpoints.at(-1)?.sockets;
console.log(
  JSON.stringify({ ...result, memory: undefined, socketsAfterAttack: [checkpoints[0], checkpoints.at(-1)] }, null, 2),
);
console.log(
  `RSS ${baseline.toFixed(0)} -> peak ${peak.toFixed(0)} (+${(peak - baseline).toFixed(0)} MiB, bound 300) -> ${after.toFixed(0)} MiB; server sockets left ${waitS} s after the attack: ${JSON.stringify(last)} (before: ${JSON.stringify(socketBaseline)}); back to the baseline after ${JSON.stringify(backAt)} s`,
);
process.exit(peak - baseline <= 300 ? 0 : 1);
