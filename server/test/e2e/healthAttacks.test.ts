/**
 * grpc.health.v1 under attack, on the gRPC port and on the health port (--health-port): both answer
 * anyone, with no token, so neither may keep anything a client leaves behind. Watches of distinct
 * names leave no entry once they end, long names are refused and quoted cut short, Watches are
 * bounded, and the health port closes broken and silent connections as the gRPC port does.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { attack, BAD_OPENINGS, eventually, serverSockets } from "../../../tools/harness/index.ts";
import { startTestServer } from "../../../tools/harness/testServer.ts";
import { HealthService, MAX_SERVICE_NAME_CHARS } from "../../src/transport/health/healthService.ts";
import { checkHealth, healthClient, type OpenWatch, openWatch, watchHealth } from "../support/healthClient.ts";

const code = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: grpc.ServiceError) => error,
  );

/** The first status a Watch is sent, or the error that ended it. */
function firstWatch(
  client: ReturnType<typeof healthClient>,
  service: string,
): Promise<{ status?: string; error?: grpc.ServiceError; call: OpenWatch }> {
  const call = openWatch(client, service);
  return call.first.then(
    (status) => ({ status, call }),
    (error: grpc.ServiceError) => ({ error, call }),
  );
}

describe("health Watch and Check under attack", () => {
  it("keeps no entry for a watched name once its Watch ends, and refuses and cuts short long names", async () => {
    const t = await startTestServer({ health: { host: "127.0.0.1", port: 0, stallMs: 5000 } });
    const client = healthClient(t.address);
    try {
      // 200 distinct unknown names as long as a name may be (200: a connection opens at most 256
      // streams at once), watched and then cancelled.
      const watches = await Promise.all(
        Array.from({ length: 200 }, (_, i) => firstWatch(client, `${i}-`.padEnd(MAX_SERVICE_NAME_CHARS, "x"))),
      );
      for (const watch of watches) assert.equal(watch.status, "SERVICE_UNKNOWN");
      assert.equal(t.server.health.openWatches, 200);
      assert.equal(t.server.health.watchedNames, 200);
      for (const watch of watches) watch.call.cancel();
      // grpc-health-check 2.1.0 kept all 200 names (and whatever they weighed) here for good.
      assert.ok(
        await eventually(() => t.server.health.watchedNames === 0 && t.server.health.openWatches === 0, 5000),
        `${t.server.health.watchedNames} names still held`,
      );

      // A watcher of a known name still sees its changes.
      const { seen, call } = watchHealth(client, "");
      await eventually(() => seen.length > 0, 2000);
      assert.deepEqual(seen, ["SERVING"]);
      call.cancel();

      // A long name: refused, and quoted cut short (grpc-health-check echoed all of it in NOT_FOUND:
      // 1 MB for a 1 MB name).
      const long = "h".repeat(60_000);
      for (const refused of [await code(checkHealth(client, long)), (await firstWatch(client, long)).error]) {
        assert.equal(refused?.code, grpc.status.INVALID_ARGUMENT);
        assert.equal(
          refused?.details,
          `service "${"h".repeat(128)}"... (60000 characters) is longer than the ${MAX_SERVICE_NAME_CHARS} characters a health service name may have`,
        );
      }
      // A 1 MB one is refused from its length prefix, before it is read at all.
      const huge = "h".repeat(1 << 20);
      const unread = await code(checkHealth(client, huge));
      assert.equal(unread?.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(
        unread?.details ?? "",
        /^the request message is \d+ bytes, beyond the 65536 a request that carries no input may have$/,
      );
      assert.equal(t.server.health.watchedNames, 0);
      // An unknown name within the bound: NOT_FOUND, quoted cut short too.
      const unknown = await code(checkHealth(client, "u".repeat(200)));
      assert.equal(unknown?.code, grpc.status.NOT_FOUND);
      assert.equal(unknown?.details, `Health status unknown for service "${"u".repeat(128)}"... (200 characters)`);

      // The health port reads no message larger than a health request.
      const port = healthClient(`127.0.0.1:${t.server.healthPort}`);
      try {
        const refused = await code(checkHealth(port, huge));
        assert.equal(refused?.code, grpc.status.RESOURCE_EXHAUSTED);
        assert.match(refused?.details ?? "", /beyond the 1024 the health port reads/);
        assert.equal(await checkHealth(port, ""), "SERVING");
      } finally {
        port.close();
      }
    } finally {
      client.close();
      await t.close();
    }
  });

  it("holds at most its bound of Watch calls at once, and takes new ones as old ones end", async () => {
    const health = new HealthService({ "": "SERVING" }, 3);
    const server = new grpc.Server();
    health.addToServer(server);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    const client = healthClient(`127.0.0.1:${port}`);
    try {
      const open = await Promise.all([0, 1, 2].map((i) => firstWatch(client, `s${i}`)));
      const fourth = await firstWatch(client, "s3");
      assert.equal(fourth.error?.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(fourth.error?.details ?? "", /already has 3 health Watch calls open, the most it holds/);
      open[0]?.call.cancel();
      await eventually(() => health.openWatches === 2, 2000);
      assert.equal((await firstWatch(client, "s4")).status, "SERVICE_UNKNOWN");
      for (const watch of open) watch.call.cancel();
    } finally {
      client.close();
      server.forceShutdown();
    }
  });
});

describe("the health port's connections", () => {
  it("closes connections nghttp2 ended and connections that never speak, as the gRPC port does", async () => {
    const t = await startTestServer({
      health: { host: "127.0.0.1", port: 0, stallMs: 5000 },
      keepaliveMs: 300,
      keepaliveTimeoutMs: 300,
      maxConnectionIdleMs: 0,
    });
    const port = t.server.healthPort as number;
    const silent: net.Socket[] = [];
    try {
      const baseline = serverSockets(port);
      for (const bytes of Object.values(BAD_OPENINGS)) {
        await Promise.all(Array.from({ length: 4 }, () => attack(port, bytes, { limitMs: 300 })));
      }
      // Connections that send nothing at all, not even the HTTP/2 preface.
      for (let i = 0; i < 8; i++) {
        const socket = net.connect(port, "127.0.0.1");
        socket.on("error", () => {});
        silent.push(socket);
      }
      await eventually(() => serverSockets(port) - baseline >= 8, 2000);
      // Without the gRPC port's keepalive and idle settings, the health port kept every one of them.
      const cleared = await eventually(() => serverSockets(port) <= baseline, 10_000);
      assert.ok(cleared, `${serverSockets(port) - baseline} health-port sockets are still open`);
      assert.equal(await checkHealth(healthClient(`127.0.0.1:${port}`), ""), "SERVING");
    } finally {
      for (const socket of silent) socket.destroy();
      await t.close();
    }
  });
});
