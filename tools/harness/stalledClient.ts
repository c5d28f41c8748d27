/**
 * An HTTP/2 client that opens gRPC streams and never takes a byte of their responses: it speaks the
 * protocol by hand over a TCP socket and never sends WINDOW_UPDATE, so the server can send it at most
 * the 65,535-byte connection window in all, as a client that has stopped reading would. (Node's own
 * http2 client and grpc-js keep granting window to paused streams, so neither can play this part.)
 * Headers are HPACK literals without indexing; everything the server sends is counted and otherwise
 * ignored, except that its SETTINGS are acknowledged, as the protocol requires. What it sends keeps to
 * the server's flow-control windows (`open` + `send`), so that a server that stops reading holds it
 * back, as it would a real client.
 */
import { connect, type Socket } from "node:net";
import { FLAG, FRAME, frame, PREFACE } from "./http2Frames.ts";

const { DATA, HEADERS, RST_STREAM, SETTINGS, WINDOW_UPDATE } = FRAME;
const { END_STREAM, ACK, END_HEADERS } = FLAG;
const MAX_FRAME = 16_384;
const INITIAL_WINDOW = 65_535;

/** One header as an HPACK "literal header field without indexing, new name" (RFC 7541 6.2.2). */
function literal(name: string, value: string): Buffer {
  const [n, v] = [Buffer.from(name), Buffer.from(value)];
  if (n.length > 126 || v.length > 126) throw new Error("header too long for this client");
  return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v]);
}

/** One message of a gRPC call: the 5-byte prefix and the body. */
export function grpcMessage(body: Uint8Array): Buffer {
  const framed = Buffer.alloc(5 + body.length);
  framed.writeUInt32BE(body.length, 1);
  framed.set(body, 5);
  return framed;
}

export class StalledClient {
  private nextStream = 1;
  private pending = Buffer.alloc(0);
  private connectionWindow = INITIAL_WINDOW;
  private streamWindow = INITIAL_WINDOW;
  private readonly windows = new Map<number, number>();
  private readonly queued = new Map<number, Buffer>();
  /** RST_STREAM codes the server sent, by stream. */
  readonly resets = new Map<number, number>();
  /** Bytes of DATA the server sent (and this client never acknowledged), by stream. */
  readonly received = new Map<number, number>();

  private constructor(private readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => this.read(chunk));
    socket.on("error", () => {});
  }

  static connect(host: string, port: number): Promise<StalledClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, host, () => {
        socket.write(Buffer.concat([PREFACE, frame(SETTINGS, 0, 0, Buffer.alloc(0))]));
        resolve(new StalledClient(socket));
      });
      socket.once("error", reject);
    });
  }

  /** Opens a call to `path` with one length-prefixed message, and never reads its answer. */
  call(authority: string, path: string, message: Uint8Array): void {
    const stream = this.nextStream;
    this.nextStream += 2;
    this.windows.set(stream, this.streamWindow);
    const headers = this.headers(authority, path);
    const body = grpcMessage(message);
    this.windows.set(stream, this.streamWindow - body.length);
    this.connectionWindow -= body.length;
    this.socket.write(
      Buffer.concat([frame(HEADERS, END_HEADERS, stream, headers), frame(DATA, END_STREAM, stream, body)]),
    );
  }

  /** Opens a call to `path` and sends nothing yet; returns its stream id. */
  open(authority: string, path: string): number {
    const stream = this.nextStream;
    this.nextStream += 2;
    this.windows.set(stream, this.streamWindow);
    this.socket.write(frame(HEADERS, END_HEADERS, stream, this.headers(authority, path)));
    return stream;
  }

  /** Sends `bytes` on `stream` as the server's windows allow; the rest waits for its WINDOW_UPDATEs. */
  send(stream: number, bytes: Uint8Array): void {
    this.queued.set(stream, Buffer.concat([this.queued.get(stream) ?? Buffer.alloc(0), bytes]));
    this.flush();
  }

  /** Bytes still waiting for the server's windows on `stream`. */
  unsent(stream: number): number {
    return this.queued.get(stream)?.length ?? 0;
  }

  close(): void {
    this.socket.destroy();
  }

  private headers(authority: string, path: string): Buffer {
    return Buffer.concat([
      literal(":method", "POST"),
      literal(":scheme", "http"),
      literal(":path", path),
      literal(":authority", authority),
      literal("content-type", "application/grpc"),
      literal("te", "trailers"),
    ]);
  }

  private flush(): void {
    for (const [stream, bytes] of this.queued) {
      let sent = 0;
      let window = this.windows.get(stream) ?? 0;
      while (sent < bytes.length && window > 0 && this.connectionWindow > 0) {
        const size = Math.min(bytes.length - sent, window, this.connectionWindow, MAX_FRAME);
        this.socket.write(frame(DATA, 0, stream, bytes.subarray(sent, sent + size)));
        sent += size;
        window -= size;
        this.connectionWindow -= size;
      }
      this.windows.set(stream, window);
      this.queued.set(stream, bytes.subarray(sent));
    }
  }

  private read(chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 9) {
      const length = this.pending.readUIntBE(0, 3);
      if (this.pending.length < 9 + length) break;
      const [type, flags] = [this.pending[3], this.pending[4] as number];
      const stream = this.pending.readUInt32BE(5) & 0x7fffffff;
      const payload = this.pending.subarray(9, 9 + length);
      if (type === SETTINGS && !(flags & ACK)) {
        for (let at = 0; at + 6 <= payload.length; at += 6) {
          // SETTINGS_INITIAL_WINDOW_SIZE applies to every stream's window, by its difference.
          if (payload.readUInt16BE(at) !== 0x4) continue;
          const size = payload.readUInt32BE(at + 2);
          for (const [id, window] of this.windows) this.windows.set(id, window + size - this.streamWindow);
          this.streamWindow = size;
        }
        this.socket.write(frame(SETTINGS, ACK, 0, Buffer.alloc(0)));
      } else if (type === WINDOW_UPDATE) {
        const increment = payload.readUInt32BE(0) & 0x7fffffff;
        if (stream === 0) this.connectionWindow += increment;
        else this.windows.set(stream, (this.windows.get(stream) ?? 0) + increment);
        this.flush();
      } else if (type === RST_STREAM) {
        this.resets.set(stream, payload.readUInt32BE(0));
      } else if (type === DATA) {
        this.received.set(stream, (this.received.get(stream) ?? 0) + length);
      }
      this.pending = this.pending.subarray(9 + length);
    }
  }
}
