/**
 * An HTTP/2 client that opens gRPC streams and never takes a byte of their responses: it speaks the
 * protocol by hand over a TCP socket and never sends WINDOW_UPDATE, so the server can send it at most
 * the 65,535-byte connection window in all, as a client that has stopped reading would. (Node's own
 * http2 client and grpc-js keep granting window to paused streams, so neither can play this part.)
 * Headers are HPACK literals without indexing; everything the server sends is read and ignored,
 * except that its SETTINGS are acknowledged, as the protocol requires.
 */
import { connect, type Socket } from "node:net";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const DATA = 0x0;
const HEADERS = 0x1;
const SETTINGS = 0x4;
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(stream, 5);
  return Buffer.concat([header, payload]);
}

/** One header as an HPACK "literal header field without indexing, new name" (RFC 7541 6.2.2). */
function literal(name: string, value: string): Buffer {
  const [n, v] = [Buffer.from(name), Buffer.from(value)];
  if (n.length > 126 || v.length > 126) throw new Error("header too long for this client");
  return Buffer.concat([Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v]);
}

export class StalledClient {
  private nextStream = 1;
  private pending = Buffer.alloc(0);

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
    const headers = Buffer.concat([
      literal(":method", "POST"),
      literal(":scheme", "http"),
      literal(":path", path),
      literal(":authority", authority),
      literal("content-type", "application/grpc"),
      literal("te", "trailers"),
    ]);
    const body = Buffer.alloc(5 + message.length);
    body.writeUInt32BE(message.length, 1);
    body.set(message, 5);
    this.socket.write(
      Buffer.concat([frame(HEADERS, END_HEADERS, stream, headers), frame(DATA, END_STREAM, stream, body)]),
    );
  }

  close(): void {
    this.socket.destroy();
  }

  private read(chunk: Buffer): void {
    this.pending = Buffer.concat([this.pending, chunk]);
    while (this.pending.length >= 9) {
      const length = this.pending.readUIntBE(0, 3);
      if (this.pending.length < 9 + length) break;
      const [type, flags] = [this.pending[3], this.pending[4] as number];
      if (type === SETTINGS && !(flags & ACK)) this.socket.write(frame(SETTINGS, ACK, 0, Buffer.alloc(0)));
      this.pending = this.pending.subarray(9 + length);
    }
  }
}
