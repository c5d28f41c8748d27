/**
 * The grpc-js server options that keep connections from outliving their use, shared by the gRPC port
 * and the health port's thread, so that neither holds a socket for good.
 *
 * Node stops reading a connection once nghttp2 has ended it with its own GOAWAY (a protocol error, the
 * Rapid Reset limit) and tells no one, so its socket would stay open in CLOSE_WAIT; a connection that
 * never speaks at all stays open too. An unanswered keepalive ping or the idle timeout is what closes
 * them (docs/reliability.md, "Network attacks").
 */
import type * as grpc from "@grpc/grpc-js";

export interface ConnectionUpkeep {
  /** Ping every connection this often; 0: never. */
  keepaliveMs: number;
  /** Close a connection whose ping goes unanswered this long. */
  keepaliveTimeoutMs: number;
  /** Close a connection with no call open for this long; 0: never. */
  maxConnectionIdleMs: number;
  /** Calls one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS). */
  maxConcurrentStreams: number;
  /** Ask a connection older than this to go away; 0: never. */
  maxConnectionAgeMs?: number;
  /** How long the calls of such a connection may still run. */
  graceMs?: number;
}

export function connectionOptions(upkeep: ConnectionUpkeep): grpc.ServerOptions {
  return {
    "grpc.max_concurrent_streams": upkeep.maxConcurrentStreams,
    ...(upkeep.keepaliveMs > 0 && {
      "grpc.keepalive_time_ms": upkeep.keepaliveMs,
      "grpc.keepalive_timeout_ms": upkeep.keepaliveTimeoutMs,
    }),
    ...(upkeep.maxConnectionIdleMs > 0 && { "grpc.max_connection_idle_ms": upkeep.maxConnectionIdleMs }),
    // grpc-js's default is no limit; it adds the +/-10% jitter so that replicas' clients do not all
    // reconnect at once.
    ...(upkeep.maxConnectionAgeMs !== undefined &&
      upkeep.maxConnectionAgeMs > 0 && {
        "grpc.max_connection_age_ms": upkeep.maxConnectionAgeMs,
        "grpc.max_connection_age_grace_ms": upkeep.graceMs ?? 0,
      }),
  };
}
