/**
 * A typed, promise-shaped face on a grpc-js client: a unary call is a Promise, a server stream an async
 * iterable, and either one stops when its AbortSignal fires. The shape is nice-grpc's; it is built on
 * grpc-js directly because nice-grpc's deadlines are client-side timers that never reach the server as
 * grpc-timeout, and this server tells a call whose deadline passed from one its client cancelled.
 */
import * as grpc from "@grpc/grpc-js";

/** grpc-js call options (deadline, call credentials), plus per-call metadata and an AbortSignal. */
export interface CallOptions extends grpc.CallOptions {
  metadata?: grpc.Metadata;
  /** Cancels the call: it then fails with CANCELLED, as a grpc-js cancel() does. */
  signal?: AbortSignal;
}

/** A grpc-js client made from a service definition: its methods by name, its channel, close(). */
export type ServiceClient = InstanceType<grpc.ServiceClientConstructor>;

export type UnaryMethod<Req, Res> = (request: Req, options?: CallOptions) => Promise<Res>;
export type ServerStreamingMethod<Req, Res> = (request: Req, options?: CallOptions) => AsyncIterable<Res>;
export type BidiStreamingMethod<Req, Res> = (requests: AsyncIterable<Req>, options?: CallOptions) => AsyncIterable<Res>;

function split(options: CallOptions = {}): { metadata: grpc.Metadata; signal?: AbortSignal; call: grpc.CallOptions } {
  const { metadata = new grpc.Metadata(), signal, ...call } = options;
  return { metadata, signal, call };
}

/** Ties a call's cancel() to a signal; returns what undoes it. */
function cancelOn(signal: AbortSignal | undefined, call: { cancel(): void }): () => void {
  if (!signal) return () => {};
  if (signal.aborted) {
    call.cancel();
    return () => {};
  }
  const cancel = () => call.cancel();
  signal.addEventListener("abort", cancel, { once: true });
  return () => signal.removeEventListener("abort", cancel);
}

/** What grpc-js's make*Request calls take first: the method's path and its message codecs. */
const route = <Req, Res>(definition: grpc.MethodDefinition<Req, Res>) =>
  [definition.path, definition.requestSerialize, definition.responseDeserialize] as const;

export function unaryMethod<Req, Res>(
  client: grpc.Client,
  definition: grpc.MethodDefinition<Req, Res>,
): UnaryMethod<Req, Res> {
  return (request, options) =>
    new Promise((resolve, reject) => {
      const { metadata, signal, call: callOptions } = split(options);
      let release = () => {};
      const call = client.makeUnaryRequest(...route(definition), request, metadata, callOptions, (error, response) => {
        release();
        if (error) reject(error);
        else resolve(response as Res);
      });
      release = cancelOn(signal, call);
    });
}

/** A stream call's messages as an async iterable; leaving the loop early cancels the call. */
async function* readAll<Res>(stream: AsyncIterable<Res> & { cancel(): void }, release: () => void): AsyncIterable<Res> {
  try {
    // A grpc-js stream iterates its messages and throws its error status (a ServiceError).
    for await (const message of stream) yield message;
  } finally {
    release();
    stream.cancel();
  }
}

export function serverStreamingMethod<Req, Res>(
  client: grpc.Client,
  definition: grpc.MethodDefinition<Req, Res>,
): ServerStreamingMethod<Req, Res> {
  return (request, options) => {
    const { metadata, signal, call } = split(options);
    const stream = client.makeServerStreamRequest(...route(definition), request, metadata, call);
    return readAll(stream, cancelOn(signal, stream));
  };
}

export function bidiStreamingMethod<Req, Res>(
  client: grpc.Client,
  definition: grpc.MethodDefinition<Req, Res>,
): BidiStreamingMethod<Req, Res> {
  return (requests, options) => {
    const { metadata, signal, call } = split(options);
    const stream = client.makeBidiStreamRequest(...route(definition), metadata, call);
    void (async () => {
      try {
        for await (const request of requests) {
          // Respect backpressure: wait for 'drain' when write() says the buffer is full.
          if (!stream.write(request)) await new Promise((resolve) => stream.once("drain", resolve));
        }
        stream.end();
      } catch {
        stream.cancel();
      }
    })();
    return readAll(stream, cancelOn(signal, stream));
  };
}

/** The method definition named `name` in a service, or an error naming what the service has. */
export function methodOf<Req, Res>(service: grpc.ServiceDefinition, name: string): grpc.MethodDefinition<Req, Res> {
  const method = service[name];
  if (!method) throw new Error(`the service has no method ${name} (it has ${Object.keys(service).join(", ")})`);
  return method as grpc.MethodDefinition<Req, Res>;
}
