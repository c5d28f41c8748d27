/**
 * Classify callers on bare HTTP/2 (node:http2): each call is one POST of pre-framed request bytes,
 * and the answer counts when its trailers say grpc-status 0. No grpc-js client machinery (channel,
 * call stack, interceptors, metadata objects), so a load generator sharing the server's two cores
 * takes about half the CPU per answer that rawClassifyClients does (docs/benchmarks.md, target 2);
 * ghz, the independent client, is cheaper still for the same reason. Insecure, no deadline,
 * no retries: for load on loopback only.
 */
import http2 from "node:http2";

export interface Http2ClassifyClient {
  /** Resolves when the server answered with grpc-status 0; rejects with the status otherwise. */
  classify(framed: Buffer): Promise<void>;
  close(): void;
}

const HEADERS = {
  [http2.constants.HTTP2_HEADER_METHOD]: "POST",
  [http2.constants.HTTP2_HEADER_PATH]: "/ctm.v1.CtmService/Classify",
  [http2.constants.HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
  te: "trailers",
};

/** A serialised request in gRPC's length-prefixed framing (uncompressed), ready to send many times. */
export function grpcFrame(message: Buffer): Buffer {
  const framed = Buffer.allocUnsafe(5 + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  message.copy(framed, 5);
  return framed;
}

export function http2ClassifyClients(port: string | number, connections = 8): Http2ClassifyClient[] {
  return Array.from({ length: connections }, () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    // A failed session fails its calls through their streams; nothing else to do with the event.
    session.on("error", () => {});
    return {
      classify: (framed) =>
        new Promise<void>((resolve, reject) => {
          let status: string | undefined;
          const stream = session.request(HEADERS);
          // A trailers-only answer (an error) carries grpc-status in its headers.
          stream.on("response", (headers) => {
            status ??= headers["grpc-status"] as string | undefined;
          });
          stream.on("trailers", (trailers) => {
            status = trailers["grpc-status"] as string | undefined;
          });
          stream.on("data", () => {});
          stream.on("error", reject);
          stream.on("close", () => (status === "0" ? resolve() : reject(new Error(`grpc-status ${status}`))));
          stream.end(framed);
        }),
      close: () => session.close(),
    };
  });
}
