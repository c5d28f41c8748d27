/**
 * Property-based fuzzing over real gRPC (fast-check): random ClassifyRequests, random and mutated
 * bytes sent as the serialized message, and truncated, bit-flipped, chunk-deleted and lying-header
 * images made from the shipped samples in every accepted format. Whatever comes in, the answer is OK
 * or a proper refusal (never INTERNAL or UNKNOWN) whose message names the field at fault, and the
 * server still serves correctly at the end.
 *
 * Each property runs for a time budget rather than a fixed count, so the whole file stays within about
 * 25 seconds on a 2-core machine; the number of cases run is printed as a test diagnostic.
 */
import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";
import { crc32 } from "node:zlib";
import * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import sharp from "sharp";
import {
  MODEL_NAME,
  type Sample,
  samples,
  startTestServer,
  type TestServer,
} from "../../../tools/harness/testServer.ts";
import { parseConfig, type ServerConfig } from "../../src/config.ts";
import {
  type ClassifyRequestMessage,
  type ClassifyResponseMessage,
  loadProtocol,
  type ModelInfoMessage,
  type TickUpdateMessage,
} from "../../src/transport/ctmV1/ctmProtocol.ts";
import { healthOf } from "../support/healthClient.ts";

/** How long each of the three properties runs (ms); with start-up and the final checks, about 20 s. */
const BUDGET_MS = 6_000;
const CLASSIFY = "/ctm.v1.CtmService/Classify";
const CLASSIFY_STREAM = "/ctm.v1.CtmService/ClassifyStream";
/** Statuses a bad request may get; INTERNAL and UNKNOWN would mean the server failed. */
const REFUSALS = new Set([
  grpc.status.INVALID_ARGUMENT,
  grpc.status.NOT_FOUND,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.FAILED_PRECONDITION,
  // halt_policy.deadline_ms that passes before the first tick (a fuzzed 1 ms deadline can).
  grpc.status.DEADLINE_EXCEEDED,
]);
/** A refusal names what it refuses: a request field, or the message as a whole. */
const NAMES_A_FIELD =
  /(^|[^\w.])(model|version|input(\.image(\.data)?|\.tensor(\.shape|\.values(\[\d+\])?)?)?|halt_policy\.[a-z_]+|top_k|ctm\.v1\.ClassifyRequest)([^\w]|$)/;

interface Answer {
  code: grpc.status;
  details: string;
  response?: ClassifyResponseMessage;
}

describe("fuzzing the Classify API", () => {
  let t: TestServer;
  let model: ModelInfoMessage;
  let known: Sample;
  /** The shipped samples, encoded in every accepted format. */
  let images: { format: string; data: Buffer }[];
  const classify = loadProtocol().ctmService.Classify as grpc.MethodDefinition<
    ClassifyRequestMessage,
    ClassifyResponseMessage
  >;
  const classifyStream = loadProtocol().ctmService.ClassifyStream as grpc.MethodDefinition<
    ClassifyRequestMessage,
    TickUpdateMessage
  >;
  const serialize = (request: ClassifyRequestMessage) => classify.requestSerialize(request);
  let cases = 0;
  /** How the fuzz requests were answered, by status name. */
  const tally = new Map<string, number>();
  const count = (answer: Answer) => {
    const name = grpc.status[answer.code] ?? String(answer.code);
    tally.set(name, (tally.get(name) ?? 0) + 1);
    return answer;
  };

  before(async () => {
    // Tighter image limits than the defaults: a lying header then costs a refusal, not a 50-megapixel decode.
    const defaults = (parseConfig([], {}) as ServerConfig).limits;
    t = await startTestServer({ limits: { ...defaults, maxImagePixels: 1 << 20, maxImageSide: 2048 } });
    model = await t.client.getModel(MODEL_NAME);
    const list = samples().slice(0, 5);
    known = list[0] as Sample;
    images = [];
    for (const sample of list) {
      for (const format of ["png", "jpeg", "webp", "gif", "tiff"] as const) {
        images.push({ format, data: await sharp(sample.png).toFormat(format).toBuffer() });
      }
    }
  });
  after(() => t.close());

  /** Sends bytes as the serialized ClassifyRequest to ClassifyStream; the answer is the final tick's result. */
  function sendStream(body: Buffer): Promise<Answer> {
    cases++;
    return new Promise<Answer>((resolve) => {
      const identity = (b: Buffer) => b;
      const call = t.client.raw.makeServerStreamRequest(CLASSIFY_STREAM, identity, identity, body);
      const ticks: TickUpdateMessage[] = [];
      call.on("data", (message: Buffer) => ticks.push(classifyStream.responseDeserialize(message)));
      // The status decides; an OK stream is checked once it has also ended (the two come in either order).
      let status: grpc.StatusObject | undefined;
      let ended = false;
      const settle = () => {
        if (!status) return;
        if (status.code !== grpc.status.OK) return resolve({ code: status.code, details: status.details });
        if (!ended) return;
        const last = ticks.at(-1);
        const final = last?.final && last.result ? last.result : undefined;
        if (!final || ticks.length !== final.ticks_used) {
          return resolve({ code: grpc.status.UNKNOWN, details: `stream of ${ticks.length} ticks without a sound end` });
        }
        resolve({ code: grpc.status.OK, details: "", response: final });
      };
      call.on("error", () => {}); // reported by 'status' as well
      call.on("status", (s: grpc.StatusObject) => {
        status = s;
        settle();
      });
      call.on("end", () => {
        ended = true;
        settle();
      });
    }).then(count);
  }

  /** Sends bytes as the serialized ClassifyRequest, exactly as they are. */
  function send(body: Buffer): Promise<Answer> {
    cases++;
    return new Promise<Answer>((resolve) => {
      const identity = (b: Buffer) => b;
      t.client.raw.makeUnaryRequest(
        CLASSIFY,
        identity,
        identity,
        body,
        new grpc.Metadata(),
        {},
        (error: grpc.ServiceError | null, response?: Buffer) => {
          if (error) resolve({ code: error.code, details: error.details });
          else
            resolve({
              code: grpc.status.OK,
              details: "",
              response: classify.responseDeserialize(response as Buffer),
            });
        },
      );
    }).then(count);
  }

  /** What every answer must be: a sound response, or a proper refusal naming a field. */
  function checkAnswer(answer: Answer, what: string): void {
    if (answer.code === grpc.status.OK) {
      const r = answer.response as ClassifyResponseMessage;
      assert.ok(r.ticks_used >= 1 && r.ticks_used <= model.max_ticks, `${what}: ticks_used ${r.ticks_used}`);
      assert.ok(r.answer_tick >= 1 && r.answer_tick <= r.ticks_used, `${what}: answer_tick ${r.answer_tick}`);
      assert.ok(r.certainty >= 0 && r.certainty <= 1, `${what}: certainty ${r.certainty}`);
      assert.ok(r.top_k.length >= 1, `${what}: no top_k`);
      for (const score of r.top_k)
        assert.ok(score.probability >= 0 && score.probability <= 1.000001, `${what}: ${score.probability}`);
      assert.notEqual(r.halt_reason, "HALT_REASON_UNSPECIFIED", what);
      return;
    }
    assert.ok(REFUSALS.has(answer.code), `${what}: status ${grpc.status[answer.code]}: ${answer.details}`);
    assert.ok(answer.details.length > 0, `${what}: empty details`);
    assert.match(answer.details, NAMES_A_FIELD, `${what}: the details name no field`);
  }

  async function run(context: TestContext, name: string, property: fc.IAsyncProperty<[unknown, ...unknown[]]>) {
    const before = cases;
    const tallied = new Map(tally);
    await fc.assert(property, {
      numRuns: 1_000_000,
      interruptAfterTimeLimit: BUDGET_MS,
      markInterruptAsFailure: false,
      includeErrorInReport: true,
      // No shrinking: each shrink step is a round trip, and once the time limit has passed fast-check
      // would walk the whole shrink tree skipping every run. The seed and path in the report replay it.
      endOnFailure: true,
    });
    const ran = cases - before;
    const answers = [...tally]
      .map(([status, n]) => [status, n - (tallied.get(status) ?? 0)] as const)
      .filter(([, n]) => n > 0)
      .map(([status, n]) => `${status} ${n}`)
      .join(", ");
    context.diagnostic(`${name}: ${ran} requests (${answers})`);
    assert.ok(ran >= 50, `${name}: only ${ran} requests ran`);
  }

  // ---------------------------------------------------------------- arbitraries
  // Mostly sane values, so that many requests run the model, and the wild ones often enough.
  const wildUint = fc.oneof(
    fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 }),
    fc.constantFrom(-1, 2 ** 32 - 1, Number.NaN, 1e300),
  );
  const uint = fc.oneof(
    { arbitrary: fc.constant(0), weight: 3 },
    { arbitrary: fc.integer({ min: 1, max: 15 }), weight: 3 },
    { arbitrary: wildUint, weight: 1 },
  );
  const real = fc.oneof(
    { arbitrary: fc.constantFrom(0.5, 0.9, 1), weight: 2 },
    { arbitrary: fc.double({ min: Number.MIN_VALUE, max: 1, noNaN: true }), weight: 2 },
    { arbitrary: fc.double(), weight: 1 }, // NaN, infinities, -0, subnormals and the extremes included
  );
  const policy = fc.oneof(
    fc.constant({}),
    fc.record({ certainty_threshold: real }),
    fc.record(
      {
        certainty_threshold: real,
        target_accuracy: real,
        min_ticks: uint,
        max_ticks: uint,
        patience: uint,
        deadline_ms: uint,
      },
      { requiredKeys: [] },
    ),
  );
  const pixels = fc
    .float32Array({ minLength: 784, maxLength: 784, noNaN: true, min: Math.fround(-0.42), max: Math.fround(2.82) })
    .map((v) => Array.from(v));
  const wildTensor = fc
    .record(
      {
        shape: fc.oneof(
          fc.constant([1, 28, 28]),
          fc.array(fc.oneof(fc.integer({ min: 0, max: 40 }), wildUint), { maxLength: 6 }),
          fc.constant([2 ** 32 - 1, 2 ** 32 - 1, 2 ** 32 - 1]),
        ),
        values: fc.oneof(
          fc.float32Array({ minLength: 784, maxLength: 784 }), // NaN, infinities and float32's extremes
          fc.float32Array({ maxLength: 1000 }),
        ),
      },
      { requiredKeys: [] },
    )
    .map(({ shape, values }) => ({ shape, values: values && Array.from(values) }));
  const input = fc.oneof(
    { arbitrary: fc.record({ tensor: fc.record({ shape: fc.constant([1, 28, 28]), values: pixels }) }), weight: 3 },
    {
      arbitrary: fc.record({
        image: fc.record({
          data: fc.constantFrom(
            ...samples()
              .slice(0, 5)
              .map((s) => s.png),
          ),
        }),
      }),
      weight: 2,
    },
    { arbitrary: fc.record({ tensor: wildTensor }), weight: 1 },
    { arbitrary: fc.record({ image: fc.record({ data: fc.uint8Array({ maxLength: 2000 }) }) }), weight: 1 },
    { arbitrary: fc.constant({}), weight: 1 },
  );
  const request = fc
    .record(
      {
        model: fc.oneof({ arbitrary: fc.constant(MODEL_NAME), weight: 4 }, fc.string(), fc.constant("")),
        version: fc.oneof({ arbitrary: fc.constant(0), weight: 3 }, fc.constant(1), wildUint),
        halt_policy: policy,
        top_k: fc.oneof({ arbitrary: fc.integer({ min: 0, max: 10 }), weight: 4 }, wildUint),
        include_trace: fc.boolean(),
      },
      { requiredKeys: [] },
    )
    .chain((fields) => input.map((i) => ({ ...fields, ...i }) as ClassifyRequestMessage));

  // ---------------------------------------------------------------- properties
  it("answers random requests with OK or a proper refusal naming the field", async (context) => {
    await run(
      context,
      "random requests",
      fc.asyncProperty(fc.array(fc.tuple(request, fc.boolean()), { minLength: 1, maxLength: 8 }), async (list) => {
        // A few at a time, so that refusals and valid requests share batches; Classify and ClassifyStream.
        const requests = list.map(([r]) => r);
        const answers = await Promise.all(
          list.map(([r, streamed]) => (streamed ? sendStream(serialize(r)) : send(serialize(r)))),
        );
        answers.forEach((answer, i) => {
          checkAnswer(answer, JSON.stringify(requests[i])?.slice(0, 300) ?? "");
        });
      }),
    );
  });

  it("answers random bytes and mutated messages with a proper refusal, never INTERNAL", async (context) => {
    const valid = [
      serialize({ model: MODEL_NAME, image: { data: known.png }, halt_policy: { max_ticks: 2 } }),
      serialize({
        model: MODEL_NAME,
        tensor: { shape: [1, 28, 28], values: new Array(784).fill(0.25) },
        halt_policy: { certainty_threshold: 0.5 },
        top_k: 3,
      }),
    ];
    const mutated = fc
      .tuple(fc.constantFrom(...valid), fc.array(mutation(), { minLength: 1, maxLength: 4 }))
      .map(([body, steps]) => steps.reduce((b, step) => step(b), body));
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 3000 }).map((b) => Buffer.from(b)),
      mutated,
    );
    await run(
      context,
      "random and mutated bytes",
      fc.asyncProperty(fc.array(fc.tuple(bytes, fc.boolean()), { minLength: 1, maxLength: 8 }), async (list) => {
        const bodies = list.map(([b]) => b);
        const answers = await Promise.all(list.map(([b, streamed]) => (streamed ? sendStream(b) : send(b))));
        answers.forEach((answer, i) => {
          checkAnswer(answer, `bytes ${bodies[i]?.toString("hex").slice(0, 200)}`);
        });
      }),
    );
  });

  it("answers truncated, corrupted and lying images with OK or INVALID_ARGUMENT on input.image.data", async (context) => {
    const corrupted = fc
      .tuple(
        fc.integer({ min: 0, max: images.length - 1 }),
        fc.array(fc.oneof(mutation(), lyingHeader(), deleteChunk()), { minLength: 1, maxLength: 3 }),
      )
      .map(([index, steps]) => {
        const base = images[index] as { format: string; data: Buffer };
        return { format: base.format, data: steps.reduce((b, step) => step(b), base.data) };
      });
    await run(
      context,
      "corrupted images",
      fc.asyncProperty(fc.array(corrupted, { minLength: 1, maxLength: 6 }), async (list) => {
        const answers = await Promise.all(
          list.map(({ data }) =>
            send(serialize({ model: MODEL_NAME, image: { data }, halt_policy: { max_ticks: 2 } })),
          ),
        );
        answers.forEach((answer, i) => {
          const what = `${list[i]?.format} ${list[i]?.data.toString("hex").slice(0, 120)}`;
          checkAnswer(answer, what);
          if (answer.code !== grpc.status.OK) {
            assert.equal(answer.code, grpc.status.INVALID_ARGUMENT, what);
            assert.match(answer.details, /^input\.image\.data /, what);
          }
        });
      }),
    );
  });

  it("still serves: health SERVING and a known digit classified correctly", async (context) => {
    context.diagnostic(`${cases} fuzz requests in all: ${JSON.stringify(Object.fromEntries(tally))}`);
    assert.ok(!tally.has("INTERNAL") && !tally.has("UNKNOWN"));
    assert.deepEqual(await healthOf(t.address, ["", "ctm.v1.CtmService"]), ["SERVING", "SERVING"]);
    for (const { data } of images.slice(0, 5)) {
      const response = await t.client.classify({ model: MODEL_NAME, image: { data } });
      assert.equal(response.top_k[0]?.index, known.label);
    }
  });
});

// ---------------------------------------------------------------- mutations
type Step = (data: Buffer) => Buffer;

/** Generic byte-level damage: truncation, bit flips, overwrites, deletions and insertions. */
function mutation(): fc.Arbitrary<Step> {
  const at = (data: Buffer, fraction: number) => Math.min(data.length, Math.floor(fraction * data.length));
  const fraction = fc.double({ min: 0, max: 1, noNaN: true });
  return fc.oneof(
    fraction.map(
      (f): Step =>
        (d) =>
          d.subarray(0, at(d, f)),
    ),
    fc.array(fc.tuple(fraction, fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 8 }).map(
      (flips): Step =>
        (d) => {
          const out = Buffer.from(d);
          for (const [f, bit] of flips) {
            const i = Math.min(out.length - 1, at(out, f));
            if (i >= 0) out[i] = (out[i] as number) ^ (1 << bit);
          }
          return out;
        },
    ),
    fc.tuple(fraction, fc.integer({ min: 0, max: 255 })).map(
      ([f, byte]): Step =>
        (d) => {
          const out = Buffer.from(d);
          if (out.length > 0) out[Math.min(out.length - 1, at(out, f))] = byte;
          return out;
        },
    ),
    fc.tuple(fraction, fc.integer({ min: 1, max: 64 })).map(
      ([f, length]): Step =>
        (d) =>
          Buffer.concat([d.subarray(0, at(d, f)), d.subarray(at(d, f) + length)]),
    ),
    fc.tuple(fraction, fc.uint8Array({ minLength: 1, maxLength: 32 })).map(
      ([f, bytes]): Step =>
        (d) =>
          Buffer.concat([d.subarray(0, at(d, f)), bytes, d.subarray(at(d, f))]),
    ),
  );
}

/** The declared width and height rewritten, where each format keeps them (PNG with its CRC fixed or not). */
function lyingHeader(): fc.Arbitrary<Step> {
  const dimension = fc.oneof(
    fc.integer({ min: 0, max: 64 }),
    fc.integer({ min: 0, max: 70_000 }),
    fc.constant(2 ** 32 - 1),
  );
  return fc.tuple(dimension, dimension, fc.boolean()).map(
    ([width, height, fixCrc]): Step =>
      (d) => {
        const out = Buffer.from(d);
        const ascii = (at: number, n: number) => out.toString("latin1", at, at + n);
        if (ascii(1, 3) === "PNG" && out.length >= 33) {
          out.writeUInt32BE(width >>> 0, 16);
          out.writeUInt32BE(height >>> 0, 20);
          if (fixCrc) out.writeUInt32BE(crc32(out.subarray(12, 29)), 29);
        } else if (ascii(0, 3) === "GIF" && out.length >= 10) {
          out.writeUInt16LE(width & 0xffff, 6);
          out.writeUInt16LE(height & 0xffff, 8);
        } else if (out[0] === 0xff && out[1] === 0xd8) {
          const sof = out.findIndex((b, i) => b === 0xff && [0xc0, 0xc1, 0xc2].includes(out[i + 1] as number));
          if (sof >= 0 && sof + 9 <= out.length) {
            out.writeUInt16BE(height & 0xffff, sof + 5);
            out.writeUInt16BE(width & 0xffff, sof + 7);
          }
        } else if (ascii(8, 4) === "WEBP" && out.length >= 30) {
          if (ascii(12, 4) === "VP8 ") {
            out.writeUInt16LE(width & 0x3fff, 26);
            out.writeUInt16LE(height & 0x3fff, 28);
          } else if (ascii(12, 4) === "VP8X") {
            out.writeUIntLE(width & 0xffffff, 24, 3);
            out.writeUIntLE(height & 0xffffff, 27, 3);
          }
        } else if (ascii(0, 2) === "II" && out.length >= 8) {
          const ifd = out.readUInt32LE(4);
          const count = ifd + 2 <= out.length ? out.readUInt16LE(ifd) : 0;
          for (let i = 0; i < count && ifd + 2 + i * 12 + 12 <= out.length; i++) {
            const entry = ifd + 2 + i * 12;
            const tag = out.readUInt16LE(entry);
            if (tag !== 256 && tag !== 257) continue;
            const value = tag === 256 ? width : height;
            if (out.readUInt16LE(entry + 2) === 3) out.writeUInt16LE(value & 0xffff, entry + 8);
            else out.writeUInt32LE(value >>> 0, entry + 8);
          }
        }
        return out;
      },
  );
}

/** One PNG chunk removed whole (its neighbours keep valid CRCs); other formats lose a range of bytes. */
function deleteChunk(): fc.Arbitrary<Step> {
  return fc.nat().map(
    (pick): Step =>
      (d) => {
        if (d.toString("latin1", 1, 4) !== "PNG") return d.subarray(0, Math.max(0, d.length - 1 - (pick % 64)));
        const chunks: [number, number][] = [];
        for (let at = 8; at + 12 <= d.length; ) {
          const end = at + 12 + d.readUInt32BE(at);
          chunks.push([at, Math.min(end, d.length)]);
          at = end;
        }
        const [start, end] = chunks[pick % Math.max(1, chunks.length)] ?? [8, 8];
        return Buffer.concat([d.subarray(0, start), d.subarray(end)]);
      },
  );
}
