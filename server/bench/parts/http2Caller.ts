/**
 * A load-test caller (loadtest's Caller) on bare HTTP/2, for open-loop loads of a thousand requests a
 * second and more on a machine the client shares with the servers: each sample's request is serialised
 * once, each call is one POST of those bytes, and the answer is decoded with the contract's own
 * deserializer. No grpc-js client machinery per call (http2ClassifyClients.ts says what that saves),
 * so more of the two cores is left to the servers being measured. Unary Classify, insecure, loopback.
 */
import http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { answerOutcome, type Caller, type Sample } from "../../../tools/harness/index.ts";
import {
  type ClassifyRequestMessage,
  type ClassifyResponseMessage,
  loadProtocol,
} from "../../src/transport/ctmV1/ctmProtocol.ts";
import { grpcFrame } from "./http2ClassifyClients.ts";

const HEADERS = {
  [http2.constants.HTTP2_HEADER_METHOD]: "POST",
  [http2.constants.HTTP2_HEADER_PATH]: "/ctm.v1.CtmService/Classify",
  [http2.constants.HTTP2_HEADER_CONTENT_TYPE]: "application/grpc",
  te: "trailers",
};

export interface Http2Caller {
  call: Caller;
  close(): void;
}

/**
 * Calls `request(sample)` on the server at `port` over `connections` HTTP/2 connections, with a
 * deadline of `timeoutMs` (grpc-timeout). Requests are serialised once per sample.
 */
export function http2Caller(
  port: number,
  request: (sample: Sample) => ClassifyRequestMessage,
  timeoutMs: number,
  connections = 4,
): Http2Caller {
  const method = loadProtocol().ctmService.Classify as grpc.MethodDefinition<
    ClassifyRequestMessage,
    ClassifyResponseMessage
  >;
  const framed = new Map<Sample, Buffer>();
  const sessions = Array.from({ length: connections }, () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    // A failed session fails its calls through their streams.
    session.on("error", () => {});
    return session;
  });
  let next = 0;
  const headers = { ...HEADERS, "grpc-timeout": `${timeoutMs}m` };

  const call: Caller = (sample, intendedAt) => {
    let bytes = framed.get(sample);
    if (!bytes) {
      bytes = grpcFrame(method.requestSerialize(request(sample)));
      framed.set(sample, bytes);
    }
    const session = sessions[next++ % sessions.length] as http2.ClientHttp2Session;
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let status: string | undefined;
      const stream = session.request(headers);
      // A trailers-only answer (an error) carries grpc-status in its headers.
      stream.on("response", (h) => {
        status ??= h["grpc-status"] as string | undefined;
      });
      stream.on("trailers", (t) => {
        status = t["grpc-status"] as string | undefined;
      });
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("error", () => {});
      stream.on("close", () => {
        const latencyMs = performance.now() - intendedAt;
        if (status !== "0") {
          const code = Number(status ?? grpc.status.UNAVAILABLE);
          resolve({ ok: false, latencyMs, code: grpc.status[code] ?? String(code) });
          return;
        }
        const body = Buffer.concat(chunks);
        resolve(answerOutcome(method.responseDeserialize(body.subarray(5, 5 + body.readUInt32BE(1))), latencyMs, null));
      });
      stream.end(bytes);
    });
  };
  return {
    call,
    close: () => {
      for (const session of sessions) session.close();
    },
  };
}
