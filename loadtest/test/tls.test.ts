/**
 * The TLS flags against a grpc-js server that requires TLS and a client certificate (the CTM server
 * does not terminate TLS itself yet; a proxy in front of it, or a later server, would).
 *
 * fixtures/tls holds a throwaway CA and, signed by it, a server certificate for localhost and
 * 127.0.0.1 and a client certificate, all P-256 and valid for 100 years, made with:
 *   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 36500 -subj "/CN=ctm-serve test CA"
 *   openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj "/CN=localhost"
 *   openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 36500 -extfile <(echo "subjectAltName = DNS:localhost, IP:127.0.0.1")
 *   (and the same for client.key / client.pem with -subj "/CN=ctm-serve test client", no extension)
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { loadProtocol } from "../../server/src/transport/protocol.ts";
import { CtmConnection } from "../src/connection.ts";
import type { TlsOptions } from "../src/options.ts";

const fixture = (name: string) => fileURLToPath(new URL(`fixtures/tls/${name}`, import.meta.url));

describe("TLS and mutual TLS", () => {
  let server: grpc.Server;
  let port: number;
  const seenAuthorization: grpc.MetadataValue[][] = [];

  before(async () => {
    server = new grpc.Server();
    server.addService(loadProtocol().ctmService, {
      ListModels: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        seenAuthorization.push(call.metadata.get("authorization"));
        callback(null, { models: [{ name: "only" }] });
      },
    });
    const credentials = grpc.ServerCredentials.createSsl(
      readFileSync(fixture("ca.pem")),
      [{ cert_chain: readFileSync(fixture("server.pem")), private_key: readFileSync(fixture("server.key")) }],
      true,
    );
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", credentials, (e, p) => (e ? reject(e) : resolve(p))),
    );
  });
  after(() => server.forceShutdown());

  async function listWith(tls: TlsOptions, token?: string, host = "127.0.0.1"): Promise<string> {
    const connection = CtmConnection.open({ address: `${host}:${port}`, tls, token, connections: 1 });
    try {
      return (await connection.pickModel(undefined, new Date(Date.now() + 5000))).name;
    } finally {
      connection.close();
    }
  }

  it("connects with the CA, a client certificate and a token", async () => {
    const tls = { ca: fixture("ca.pem"), cert: fixture("client.pem"), key: fixture("client.key") };
    assert.equal(await listWith(tls, "t0ken"), "only");
    assert.deepEqual(seenAuthorization.at(-1), ["Bearer t0ken"]);
    assert.equal(await listWith({ ...tls, serverName: "localhost" }, undefined, "127.0.0.1"), "only");
  });

  it("is refused without the client certificate the server requires", async () => {
    await assert.rejects(
      listWith({ ca: fixture("ca.pem") }),
      (e: Partial<grpc.ServiceError>) => e.code === grpc.status.UNAVAILABLE,
    );
  });

  it("refuses a server its CA did not sign", async () => {
    const tls = { ca: fixture("client.pem"), cert: fixture("client.pem"), key: fixture("client.key") };
    await assert.rejects(listWith(tls), (e: Partial<grpc.ServiceError>) => e.code === grpc.status.UNAVAILABLE);
  });

  it("names the flag of a file it cannot read", () => {
    assert.throws(
      () =>
        CtmConnection.open({
          address: "127.0.0.1:1",
          tls: { ca: fixture("missing.pem") },
          token: undefined,
          connections: 1,
        }),
      /--tls-ca .*missing\.pem/,
    );
  });
});
