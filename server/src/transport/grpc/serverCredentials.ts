/**
 * The gRPC port's credentials: plaintext, TLS, or mutual TLS (the client must present a certificate
 * signed by the given CA). The PEM files are read once at start-up; a file that cannot be read fails
 * the start with the flag and the path, not a TLS handshake error on the first call.
 */
import { readFileSync } from "node:fs";
import * as grpc from "@grpc/grpc-js";
import type { ServerConfig } from "../../config.ts";

export function serverCredentials(tls: ServerConfig["tls"]): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  const cert = readPem(tls.cert, "--tls-cert", "CERTIFICATE");
  const key = readPem(tls.key, "--tls-key", "PRIVATE KEY");
  const clientCa = tls.clientCa ? readPem(tls.clientCa, "--tls-client-ca", "CERTIFICATE") : null;
  try {
    // With a client CA, checkClientCertificate makes the handshake refuse clients without a valid one.
    return grpc.ServerCredentials.createSsl(clientCa, [{ cert_chain: cert, private_key: key }], clientCa !== null);
  } catch (error) {
    throw new Error(
      `TLS credentials from --tls-cert ${tls.cert} and --tls-key ${tls.key}: ${(error as Error).message}`,
    );
  }
}

/** The file's bytes, after checking that it holds a PEM block of the expected kind. */
function readPem(path: string, flag: string, kind: "CERTIFICATE" | "PRIVATE KEY"): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (error) {
    throw new Error(`${flag}: cannot read ${path}: ${(error as Error).message}`);
  }
  // "PRIVATE KEY" also matches "EC PRIVATE KEY" and "RSA PRIVATE KEY".
  if (!new RegExp(`-----BEGIN [A-Z ]*${kind}-----`).test(pem.toString("latin1"))) {
    throw new Error(`${flag}: ${path} holds no PEM ${kind.toLowerCase()} (no "-----BEGIN ...${kind}-----" line)`);
  }
  return pem;
}
