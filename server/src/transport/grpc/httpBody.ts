/**
 * Request bodies on the HTTP port (the playground's API, the Open Inference Protocol's REST endpoints),
 * read under the same bounds as gRPC messages: the in-flight bound, the receive timeout, a size limit.
 */
import type * as http from "node:http";
import { status as grpcStatus } from "@grpc/grpc-js";
import { ServerError } from "../../engine/serverError.ts";
import { HttpRefusal } from "./httpRefusal.ts";
import { type InflightBytes, inflightRefusal } from "./inflightBytes.ts";

/**
 * A request body, read under the server's bounds: its declared length is taken from the in-flight
 * bound before a byte is read (a chunked body's chunks as they come), it must come within `timeoutMs`,
 * and one beyond `maxBytes` is refused. Every refusal comes before the body is held; `release` gives
 * the bytes back once the call ends.
 */
export class BodyReader {
  private held = 0;
  /** Set when the body was refused unread: the connection then closes rather than read the rest. */
  unread = false;

  constructor(
    private readonly req: http.IncomingMessage,
    private readonly maxBytes: number,
    private readonly inflight: InflightBytes,
    private readonly timeoutMs: number,
    /** The refusal's words for a body of `bytes` beyond `maxBytes`: what the bound is made of, which flag moves it. */
    private readonly tooLargeWords: (bytes: number, maxBytes: number) => string,
  ) {}

  read(): Promise<Buffer> {
    const { req, maxBytes, timeoutMs } = this;
    const declared = Number(req.headers["content-length"] ?? Number.NaN);
    this.unread = true;
    if (declared > maxBytes) return Promise.reject(this.tooLarge(declared));
    try {
      if (Number.isFinite(declared)) this.take(declared);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const done = (error: unknown, body?: Buffer) => {
        clearTimeout(timer);
        req.removeListener("data", onData);
        req.removeListener("end", onEnd);
        req.removeListener("close", onClose);
        req.removeListener("error", onClose);
        if (error === undefined) {
          this.unread = false;
          resolve(body as Buffer);
        } else {
          // Nothing more is read: the refusal goes out and the connection closes behind it.
          req.pause();
          reject(error);
        }
      };
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) return done(this.tooLarge(size));
        try {
          if (!Number.isFinite(declared)) this.take(chunk.length);
        } catch (error) {
          return done(error);
        }
        chunks.push(chunk);
      };
      const onEnd = () => done(undefined, Buffer.concat(chunks));
      // The client went away mid-upload: a cancellation, not a fault of the server's.
      const onClose = () =>
        done(new DOMException("the client closed the connection before its request body arrived", "AbortError"));
      const timer = setTimeout(
        () =>
          done(
            new HttpRefusal(
              {
                code: grpcStatus.DEADLINE_EXCEEDED,
                details: `the request body did not arrive within ${timeoutMs} ms (--receive-timeout-ms): ${size} bytes came`,
              },
              408,
            ),
          ),
        timeoutMs,
      );
      req.on("data", onData);
      req.on("end", onEnd);
      req.on("close", onClose);
      req.on("error", onClose);
    });
  }

  release(): void {
    this.inflight.give(this.held);
    this.held = 0;
  }

  private take(bytes: number): void {
    if (!this.inflight.tryTake(bytes)) throw inflightRefusal(this.inflight, this.held + bytes);
    this.held += bytes;
  }

  private tooLarge(bytes: number): ServerError {
    return new ServerError("RESOURCE_EXHAUSTED", this.tooLargeWords(bytes, this.maxBytes));
  }
}
