/**
 * The client side against a scripted CtmService on loopback: what goes out (the request, the bearer
 * token) and how every kind of answer comes back as a CallOutcome.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import {
  type ClassifyRequestMessage,
  loadProtocol,
  type TickUpdateMessage,
} from "../../server/src/transport/ctmV1/ctmProtocol.ts";
import { CLIENT_NO_RESULT, CtmConnection, makeCaller, type Sample } from "../../tools/harness/index.ts";

const sample: Sample = { name: "a.png", input: { image: { data: Buffer.from([1, 2, 3]) } }, label: [3] };

const result = {
  model: "m",
  top_k: [{ index: 3, label: "3", probability: 0.9 }],
  certainty: 0.95,
  answer_tick: 4,
  ticks_used: 4,
  halt_reason: "HALT_REASON_THRESHOLD",
};

describe("makeCaller", () => {
  let server: grpc.Server;
  let port: number;
  const seen: Array<{ request: ClassifyRequestMessage; authorization: grpc.MetadataValue[] }> = [];
  /** What the next call answers: a response, a status, or (streams) no final message. */
  let script: "ok" | "exhausted" | "no-final" = "ok";

  before(async () => {
    server = new grpc.Server();
    server.addService(loadProtocol().ctmService, {
      Classify: (
        call: grpc.ServerUnaryCall<ClassifyRequestMessage, unknown>,
        callback: grpc.sendUnaryData<unknown>,
      ) => {
        seen.push({ request: call.request, authorization: call.metadata.get("authorization") });
        if (script === "exhausted") callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: "queue full" });
        else callback(null, result);
      },
      ClassifyStream: (call: grpc.ServerWritableStream<ClassifyRequestMessage, Partial<TickUpdateMessage>>) => {
        seen.push({ request: call.request, authorization: call.metadata.get("authorization") });
        for (let tick = 1; tick <= 4; tick++) {
          const final = tick === 4 && script !== "no-final";
          call.write({
            tick,
            certainty: tick / 4,
            final,
            ...(final ? { halt_reason: "HALT_REASON_THRESHOLD", result } : {}),
          } as Partial<TickUpdateMessage>);
        }
        call.end();
      },
      ListModels: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, { models: [] }),
      GetModel: (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
        callback({ code: grpc.status.NOT_FOUND, details: "no such model" }),
    });
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
  });
  after(() => server.forceShutdown());

  const connect = (token?: string) =>
    CtmConnection.open({ address: `127.0.0.1:${port}`, tls: null, token, connections: 2 });

  it("sends the sample with the threshold and top_k 1, and the bearer token as metadata", async () => {
    script = "ok";
    seen.length = 0;
    const connection = connect("s3cret");
    try {
      const call = makeCaller(connection, { model: "m", version: 0, call: "unary", threshold: 0.7, timeoutMs: 5000 });
      const outcome = await call(sample, performance.now());
      assert.deepEqual(
        { ...outcome, latencyMs: 0 },
        {
          ok: true,
          latencyMs: 0,
          firstTickMs: null,
          ticksUsed: 4,
          haltReason: "THRESHOLD",
          prediction: [3],
        },
      );
      const [first] = seen;
      assert.deepEqual(first?.authorization, ["Bearer s3cret"]);
      assert.equal(first?.request.model, "m");
      assert.equal(first?.request.halt_policy?.certainty_threshold, 0.7);
      assert.equal(first?.request.top_k, 1);
      assert.equal(first?.request.include_trace, false);
      assert.deepEqual([...(first?.request.image?.data ?? [])], [1, 2, 3]);
    } finally {
      connection.close();
    }
  });

  it("sends no authorization without a token", async () => {
    script = "ok";
    seen.length = 0;
    const connection = connect();
    try {
      await makeCaller(connection, { model: "m", version: 0, call: "unary", threshold: 0.7, timeoutMs: 5000 })(
        sample,
        performance.now(),
      );
      assert.deepEqual(seen[0]?.authorization, []);
    } finally {
      connection.close();
    }
  });

  it("times streams to the first tick and to the final message", async () => {
    script = "ok";
    const connection = connect();
    try {
      const outcome = await makeCaller(connection, {
        model: "m",
        version: 0,
        call: "stream",
        threshold: 0.9,
        timeoutMs: 5000,
      })(sample, performance.now());
      assert.ok(outcome.ok);
      assert.ok(outcome.firstTickMs !== null && outcome.firstTickMs > 0 && outcome.firstTickMs <= outcome.latencyMs);
      assert.equal(outcome.ticksUsed, 4);
      assert.deepEqual(outcome.prediction, [3]);
    } finally {
      connection.close();
    }
  });

  it("turns a status into its name and a stream without a final message into CLIENT_NO_RESULT", async () => {
    const connection = connect();
    try {
      script = "exhausted";
      const unary = makeCaller(connection, { model: "m", version: 0, call: "unary", threshold: 0.9, timeoutMs: 5000 });
      const failed = await unary(sample, performance.now());
      assert.ok(!failed.ok && failed.code === "RESOURCE_EXHAUSTED");
      script = "no-final";
      const stream = makeCaller(connection, {
        model: "m",
        version: 0,
        call: "stream",
        threshold: 0.9,
        timeoutMs: 5000,
      });
      const broken = await stream(sample, performance.now());
      assert.ok(!broken.ok && broken.code === CLIENT_NO_RESULT);
    } finally {
      connection.close();
    }
  });

  it("cancels calls in flight when the signal aborts", async () => {
    script = "ok";
    const connection = CtmConnection.open({ address: "127.0.0.1:1", tls: null, token: undefined, connections: 1 });
    try {
      const abort = new AbortController();
      const call = makeCaller(connection, { model: "m", version: 0, call: "unary", threshold: 0.9, timeoutMs: 60_000 });
      const pending = call(sample, performance.now(), abort.signal);
      abort.abort();
      const outcome = await pending;
      assert.ok(!outcome.ok && ["CANCELLED", "UNAVAILABLE"].includes(outcome.code), JSON.stringify(outcome));
    } finally {
      connection.close();
    }
  });

  it("explains which model to pick", async () => {
    const connection = connect();
    try {
      await assert.rejects(connection.pickModel(undefined, new Date(Date.now() + 5000)), /has 0 models .*--model/);
      await assert.rejects(connection.pickModel("x", new Date(Date.now() + 5000)), /no such model/);
    } finally {
      connection.close();
    }
  });
});
