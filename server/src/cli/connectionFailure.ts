/**
 * What a client tells its user when it cannot reach the server. grpc-js's own words do not say what to
 * check: a stopped server reads "No connection established. Last error: ... Resolution note: " with
 * nothing after the note, and the playground's HTTP port reads "Protocol error". The command-line client,
 * the health probe and the load generator all explain a failed connection with this one function.
 */
import { status } from "@grpc/grpc-js";

/** How the client was pointed at the server, for the advice. */
export interface ClientFlags {
  /** The flag that names the address, e.g. `--address`; "" when it comes from the server's CTM_* settings. */
  address: string;
  /** The flag that gives this client TLS (e.g. `--tls-ca`), or null for a client that cannot do TLS. */
  tls: string | null;
  /** Whether this call was made over TLS. */
  usingTls: boolean;
}

const GRPC_PORT = "the server's gRPC port (--port, 50051 by default)";

/**
 * A sentence or two on what went wrong and what to check, for an error that means no connection to a
 * gRPC server was made; undefined for every other error (the server's own answers, which say it well).
 */
export function describeConnectionFailure(
  error: { code?: number; details?: string },
  address: string,
  flags: ClientFlags,
): string | undefined {
  const details = error.details ?? "";
  if (error.code !== status.UNAVAILABLE) return undefined;
  const pointAt = flags.address
    ? `point ${flags.address} (or CTM_ADDRESS) at ${GRPC_PORT}`
    : "check that CTM_HOST and CTM_PORT (or CTM_HEALTH_PORT) here are the server's";
  if (/Name resolution failed/i.test(details)) {
    return `cannot find the host of ${address} (name resolution failed): check the host name, or ${pointAt}.`;
  }
  if (!/No connection established|Failed to connect|Connection dropped/i.test(details)) return undefined;
  const cause = lastError(details);
  if (/ECONNREFUSED/.test(details)) {
    return (
      `nothing is listening on ${address} (connection refused). Is the server running? Start it with ` +
      `npm start (its log says where it listens), or ${pointAt}.`
    );
  }
  if (/Protocol error/i.test(details)) {
    return (
      `${address} answered, but not as a gRPC server: it may be the playground's HTTP port ` +
      `(--http-port, 8080 by default; open that one in a browser) or the metrics port (--metrics-port, ` +
      `9464). A gRPC client needs the gRPC port: ${pointAt}.`
    );
  }
  if (flags.usingTls && /SSL|TLS|certificate|handshake/i.test(details)) {
    return (
      `the TLS handshake with ${address} failed (${cause}): a server started without --tls-cert speaks ` +
      `plaintext (leave out ${flags.tls ?? "TLS"}), and one with it needs the CA that signed its certificate.`
    );
  }
  if (/ETIMEDOUT|EHOSTUNREACH|ENETUNREACH/.test(details)) {
    return `${address} does not answer (${cause}): check the host and port and that no firewall is in between, or ${pointAt}.`;
  }
  // A plaintext client reads a bare "Failed to connect" from a TLS port.
  const tls = flags.usingTls
    ? ""
    : flags.tls
      ? `If the server was started with --tls-cert, give ${flags.tls}. `
      : "If the server was started with --tls-cert, this client cannot speak TLS to it (npm run loadtest -- --tls-ca and grpcurl -cacert can). ";
  return `could not connect to ${address} (${cause}). ${tls}Is the server running (npm start)? Otherwise ${pointAt}.`;
}

/** grpc-js's "Last error: ..." without the timestamp, OpenSSL's source location and the empty resolution note. */
function lastError(details: string): string {
  const last = /Last error: (?:Error: )?(.*?)\s*(?:\(\d{4}-\d\d-\d\dT[^)]*\))?\.?\s*(?:Resolution note:.*)?$/s.exec(
    details.trim(),
  );
  const text = (last?.[1] ?? details).trim();
  // OpenSSL: "<hex>:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:<file>:<line>:"
  const ssl = /SSL routines:[^:]*:([^:]+)/.exec(text);
  return ssl ? `TLS: ${ssl[1]}` : text;
}
