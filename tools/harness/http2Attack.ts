/**
 * A hostile HTTP/2 client in a few lines of node:net: it writes raw frames (bad ones on purpose) and
 * reads back what the server sends. Loopback only; every connection is bounded in time.
 */
import { readFileSync } from "node:fs";
import type http2 from "node:http2";
import net from "node:net";
import { gzipSync } from "node:zlib";
import { FLAG, FRAME, frame, PREFACE } from "./http2Frames.ts";

/** HPACK literal (not indexed) with a name from the static table. */
function literal(nameIndex: number, value: string): Buffer {
  const name = nameIndex < 15 ? Buffer.from([nameIndex]) : Buffer.from([0x0f, nameIndex - 15]);
  return Buffer.concat([name, Buffer.from([value.length]), Buffer.from(value)]);
}

/** A HEADERS block for a gRPC call to `path`, with no Huffman coding and no dynamic table. */
export function grpcHeaders(path: string): Buffer {
  return Buffer.concat([
    Buffer.from([0x83, 0x86]), // :method POST, :scheme http
    literal(4, path), // :path
    literal(1, "localhost"), // :authority
    literal(31, "application/grpc"), // content-type
    Buffer.from([0x00, 2]),
    Buffer.from("te"),
    Buffer.from([8]),
    Buffer.from("trailers"),
  ]);
}

export const HEALTH_CHECK = "/grpc.health.v1.Health/Check";

/** One gRPC message frame holding an empty protobuf message. */
export const EMPTY_MESSAGE = Buffer.from([0, 0, 0, 0, 0]);

/** Ways to make nghttp2 end a connection with its own GOAWAY, each a few dozen bytes. */
export const BAD_OPENINGS: Record<string, Buffer> = {
  // A SETTINGS payload must be a multiple of 6 bytes: FRAME_SIZE_ERROR.
  "SETTINGS of 5 bytes": Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0, Buffer.alloc(5))]),
  // HEADERS must be on a stream: GOAWAY INTERNAL_ERROR (and this one Node does close).
  "HEADERS on stream 0": Buffer.concat([
    PREFACE,
    frame(FRAME.SETTINGS, 0, 0),
    frame(FRAME.HEADERS, FLAG.END_HEADERS, 0, Buffer.from([0x82])),
  ]),
  // An HPACK integer that overflows: COMPRESSION_ERROR.
  "undecodable HPACK": Buffer.concat([
    PREFACE,
    frame(FRAME.SETTINGS, 0, 0),
    frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])),
  ]),
  // Open and cancel streams faster than nghttp2 allows (CVE-2023-44487): GOAWAY INTERNAL_ERROR at the 1,001st.
  "Rapid Reset": Buffer.concat([
    PREFACE,
    frame(FRAME.SETTINGS, 0, 0),
    ...Array.from({ length: 1500 }, (_, i) => {
      const stream = 2 * i + 1;
      return Buffer.concat([
        frame(FRAME.HEADERS, FLAG.END_HEADERS, stream, grpcHeaders(HEALTH_CHECK)),
        frame(FRAME.RST_STREAM, 0, stream, Buffer.from([0, 0, 0, 8])),
      ]);
    }),
  ]),
};

export interface Received {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/**
 * Connects, writes `bytes` (and `afterSettings` once the server's SETTINGS frame has arrived), and
 * after `lingerMs` half-closes the connection, collecting the frames the server sent. Resolves when
 * the socket closes or `limitMs` passes.
 */
export function attack(
  port: number,
  bytes: Buffer,
  {
    lingerMs = 20,
    limitMs = 2000,
    afterSettings,
  }: { lingerMs?: number; limitMs?: number; afterSettings?: Buffer } = {},
): Promise<Received[]> {
  return new Promise((resolve) => {
    const frames: Received[] = [];
    let buffered = Buffer.alloc(0);
    const socket = net.connect(port, "127.0.0.1", () => {
      socket.write(bytes);
      setTimeout(() => socket.end(), lingerMs);
    });
    const done = () => {
      clearTimeout(limit);
      socket.destroy();
      resolve(frames);
    };
    const limit = setTimeout(done, limitMs);
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 9) {
        const length = buffered.readUIntBE(0, 3);
        if (buffered.length < 9 + length) break;
        const received = {
          type: buffered[3] as number,
          flags: buffered[4] as number,
          stream: buffered.readUInt32BE(5),
          payload: buffered.subarray(9, 9 + length),
        };
        frames.push(received);
        buffered = buffered.subarray(9 + length);
        if (afterSettings && received.type === FRAME.SETTINGS && !(received.flags & FLAG.ACK)) {
          socket.write(afterSettings);
          afterSettings = undefined;
        }
      }
    });
    socket.on("error", () => {});
    socket.on("close", done);
  });
}

/**
 * Sockets of this machine whose local port is `port` and that still hold a file descriptor
 * (ESTABLISHED or CLOSE_WAIT): the server's side of its client connections. Linux (/proc/net/tcp).
 */
export function serverSockets(port: number): number {
  let count = 0;
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const [, local, , state] = line.trim().split(/\s+/);
      if (!local || !state) continue;
      const localPort = Number.parseInt(local.slice(local.lastIndexOf(":") + 1), 16);
      // 01 ESTABLISHED, 08 CLOSE_WAIT (the peer has gone; our side never closed).
      if (localPort === port && (state === "01" || state === "08")) count++;
    }
  }
  return count;
}

/** Polls until `check` holds or `ms` pass; returns whether it held. */
export async function eventually(check: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

function varint(n: number): Buffer {
  const bytes: number[] = [];
  while (n >= 0x80) {
    bytes.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

function lengthDelimited(field: number, payload: Buffer): Buffer {
  return Buffer.concat([varint(field * 8 + 2), varint(payload.length), payload]);
}

/** A ClassifyRequest body written by hand, so that a huge one costs the attacker no decoding library. */
export function classifyRequestBytes(
  model: string,
  input: { image: Buffer } | { shape: number[]; values: number },
): Buffer {
  const body =
    "image" in input
      ? lengthDelimited(3, lengthDelimited(1, input.image))
      : lengthDelimited(
          4,
          Buffer.concat([
            lengthDelimited(1, Buffer.concat(input.shape.map(varint))),
            // `values` zero floats, packed.
            lengthDelimited(2, Buffer.alloc(4 * input.values)),
          ]),
        );
  return Buffer.concat([lengthDelimited(1, Buffer.from(model)), body]);
}

/** One gRPC message, gzip-compressed: flag 1, length, then the compressed body. */
export function gzipMessage(body: Buffer): Buffer {
  const compressed = gzipSync(body);
  const prefix = Buffer.alloc(5);
  prefix[0] = 1;
  prefix.writeUInt32BE(compressed.length, 1);
  return Buffer.concat([prefix, compressed]);
}

/** Sends one already-framed message to `path` over `session`; resolves with the call's grpc-status and message. */
export function rawCall(
  session: http2.ClientHttp2Session,
  path: string,
  message: Buffer,
): Promise<{ status: number; details: string }> {
  return new Promise((resolve) => {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      "grpc-encoding": "gzip",
      te: "trailers",
    });
    const ended = grpcEnding(stream);
    stream.on("close", () => resolve({ status: ended.status, details: ended.details }));
    stream.end(message);
  });
}

/**
 * Reads a raw call's grpc-status and grpc-message as they arrive, in the headers of a trailers-only
 * answer or in the trailers; discards the data and swallows stream errors (the status is the result).
 * The fields hold -1 and "" until the server sends a status.
 */
export function grpcEnding(stream: http2.ClientHttp2Stream): { status: number; details: string } {
  const ended = { status: -1, details: "" };
  const read = (headers: http2.IncomingHttpHeaders) => {
    if (headers["grpc-status"] !== undefined) ended.status = Number(headers["grpc-status"]);
    if (headers["grpc-message"] !== undefined) ended.details = decodeURIComponent(String(headers["grpc-message"]));
  };
  stream.on("response", read);
  stream.on("trailers", read);
  stream.on("data", () => {});
  stream.on("error", () => {});
  return ended;
}
