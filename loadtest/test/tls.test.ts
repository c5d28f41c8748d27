/**
 * The load tester's TLS and token flags against the real server with mutual TLS and bearer tokens on.
 * The certificates are the server tests' fixtures (server/test/fixtures/tls, made as its README says).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { CtmConnection, type TlsOptions } from "../../tools/harness/index.ts";
import { startTestServer, type TestServer } from "../../tools/harness/testServer.ts";

const fixture = (name: string) => fileURLToPath(new URL(`../../server/test/fixtures/tls/${name}`, import.meta.url));
const TOKEN = "loadtest-token-0123456789";

describe("TLS and mutual TLS", () => {
  let t: TestServer;
  let port: number;

  before(async () => {
    t = await startTestServer({
      tls: { cert: fixture("server.pem"), key: fixture("server.key"), clientCa: fixture("ca.pem") },
      auth: { tokens: [TOKEN], tokensFile: null },
    });
    port = t.server.port;
  });
  after(() => t.close());

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
    assert.equal(await listWith(tls, TOKEN), "mnist-ctm");
    assert.equal(await listWith({ ...tls, serverName: "localhost" }, TOKEN, "127.0.0.1"), "mnist-ctm");
    await assert.rejects(
      listWith(tls, undefined),
      (e: Partial<grpc.ServiceError>) => e.code === grpc.status.UNAUTHENTICATED && /bearer token/.test(e.details ?? ""),
    );
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
