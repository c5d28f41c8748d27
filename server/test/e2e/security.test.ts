/**
 * Who gets in: TLS and mutual TLS on the gRPC port, bearer tokens with per-model grants, and the
 * probes that must keep working without secrets. Real server, real certificates (fixtures/tls, see
 * fixtures/tls/README.md), real gRPC on loopback.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import {
  CtmTestClient,
  failure,
  MODEL_NAME,
  REPO,
  samples,
  startTestServer,
  type TestServer,
  testConfig,
} from "../../../tools/harness/testServer.ts";
import { createLogger } from "../../src/logger.ts";
import { startServer } from "../../src/server.ts";
import type { ClassifyResponseMessage } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { TokenTable } from "../../src/transport/grpc/authentication.ts";
import { healthOf } from "../support/healthClient.ts";

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/tls/${name}`, import.meta.url));
const pem = (name: string) => readFileSync(fixture(name));

const SERVER_TLS = { cert: fixture("server.pem"), key: fixture("server.key"), clientCa: null };
const MUTUAL_TLS = { ...SERVER_TLS, clientCa: fixture("ca.pem") };

const sample = () => samples()[0] as NonNullable<ReturnType<typeof samples>[number]>;
const imageRequest = (model = MODEL_NAME) => ({ model, image: { data: sample().png } });

/** One Classify call through a fresh channel, with optional call metadata. */
async function classifyWith(
  address: string,
  credentials: grpc.ChannelCredentials,
  request: object = imageRequest(),
  metadata = new grpc.Metadata(),
): Promise<ClassifyResponseMessage> {
  const client = new CtmTestClient(address, credentials);
  try {
    return await new Promise((resolve, reject) => {
      const method = client.raw.Classify as (
        r: object,
        m: grpc.Metadata,
        o: grpc.CallOptions,
        c: grpc.requestCallback<ClassifyResponseMessage>,
      ) => void;
      method.call(client.raw, request, metadata, { deadline: Date.now() + 20_000 }, (error, response) =>
        error ? reject(error) : resolve(response as ClassifyResponseMessage),
      );
    });
  } finally {
    client.close();
  }
}

const bearer = (token: string) => {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return metadata;
};

const trustingCa = () => grpc.credentials.createSsl(pem("ca.pem"));
const withClientCert = (cert = "client.pem", key = "client.key") =>
  grpc.credentials.createSsl(pem("ca.pem"), pem(key), pem(cert));
/** TLS connects to "localhost", the name the server certificate carries; the IP is in it too. */
const localhost = (t: TestServer) => `localhost:${t.server.port}`;

describe("TLS", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ tls: SERVER_TLS });
  });
  after(() => t.close());

  it("serves a client that trusts the server's CA, and logs that TLS is on", async () => {
    const response = await classifyWith(localhost(t), trustingCa());
    assert.equal(response.top_k?.[0]?.index, sample().label);
    assert.ok(t.logs.some((line) => line.tls === "server"));
  });

  it("refuses plaintext clients and clients that do not trust its certificate", async () => {
    const plaintext = await failure(classifyWith(localhost(t), grpc.credentials.createInsecure()));
    assert.equal(plaintext.code, grpc.status.UNAVAILABLE);
    const untrusting = await failure(classifyWith(localhost(t), grpc.credentials.createSsl(pem("rogue-ca.pem"))));
    assert.equal(untrusting.code, grpc.status.UNAVAILABLE);
  });
});

describe("mutual TLS", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ tls: MUTUAL_TLS });
  });
  after(() => t.close());

  it("serves a client whose certificate its client CA signed, health included", async () => {
    const response = await classifyWith(localhost(t), withClientCert());
    assert.equal(response.top_k?.[0]?.index, sample().label);
    assert.deepEqual(await healthOf(localhost(t), [""], withClientCert()), ["SERVING"]);
    assert.ok(t.logs.some((line) => line.tls === "mutual"));
  });

  it("refuses a client without a certificate, or with one another CA signed", async () => {
    const bare = await failure(classifyWith(localhost(t), trustingCa()));
    assert.equal(bare.code, grpc.status.UNAVAILABLE);
    const rogue = await failure(classifyWith(localhost(t), withClientCert("rogue-client.pem", "rogue-client.key")));
    assert.equal(rogue.code, grpc.status.UNAVAILABLE);
    // The refused handshakes cost the server nothing: it still serves.
    const response = await classifyWith(localhost(t), withClientCert());
    assert.equal(response.top_k?.[0]?.index, sample().label);
  });

  it("can be probed by npm run health with the CA and a client certificate", async () => {
    const env = {
      ...process.env,
      CTM_HOST: "127.0.0.1",
      CTM_PORT: String(t.server.port),
      CTM_TLS_CERT: MUTUAL_TLS.cert,
      CTM_TLS_KEY: MUTUAL_TLS.key,
      CTM_TLS_CLIENT_CA: MUTUAL_TLS.clientCa,
    };
    const probe = (...args: string[]) =>
      new Promise<{ code: number; output: string }>((resolve) =>
        execFile(
          process.execPath,
          ["--import", "tsx", join(REPO, "server/src/cli/healthProbe.ts"), ...args],
          { env },
          (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, output: stdout + stderr }),
        ),
      );
    const tls = ["--tls-ca", fixture("ca.pem"), "--server-name", "localhost"];
    const ok = await probe(...tls, "--tls-cert", fixture("client.pem"), "--tls-key", fixture("client.key"));
    assert.equal(ok.code, 0, ok.output);
    assert.match(ok.output, /SERVING/);
    const noCa = await probe();
    assert.equal(noCa.code, 2);
    assert.match(noCa.output, /the server uses TLS \(CTM_TLS_CERT is set\): give --tls-ca/);
    const noCert = await probe(...tls);
    assert.equal(noCert.code, 1, noCert.output);
  });
});

describe("bearer tokens", () => {
  const FULL = "full-access-token-0123456789";
  const FROM_FILE = "file-token-abcdefghijklmnop";
  const OTHER_ONLY = "other-model-only-token-xyz123";
  let t: TestServer;
  let address: string;
  const insecure = grpc.credentials.createInsecure();

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), "ctm-tokens-"));
    const tokensFile = join(dir, "tokens");
    writeFileSync(
      tokensFile,
      [
        "# token        models it may call (none listed: all)",
        `${FROM_FILE}   ${MODEL_NAME}`,
        "",
        `${OTHER_ONLY}  other-model   # granted a model this server does not even have`,
      ].join("\n"),
    );
    t = await startTestServer({ auth: { tokens: [FULL], tokensFile } });
    address = t.address;
  });
  after(() => t.close());

  it("lets in a call with a valid token, from the flag or the file", async () => {
    for (const token of [FULL, FROM_FILE]) {
      const response = await classifyWith(address, insecure, imageRequest(), bearer(token));
      assert.equal(response.top_k?.[0]?.index, sample().label);
    }
    const streamed: unknown[] = [];
    const client = new CtmTestClient(address);
    const stream = (
      client.raw.ClassifyStream as (r: object, m: grpc.Metadata) => grpc.ClientReadableStream<{ final: boolean }>
    ).call(client.raw, imageRequest(), bearer(FULL));
    for await (const update of stream) streamed.push(update);
    client.close();
    assert.ok(streamed.length >= 1);
  });

  it("answers UNAUTHENTICATED, saying what is wrong, without a valid token", async () => {
    const cases: [grpc.Metadata, RegExp][] = [
      [new grpc.Metadata(), /needs a bearer token: send metadata "authorization: Bearer <token>"/],
      [bearer("not-a-token-we-know-of-000"), /bearer token in metadata is not valid/],
      [bearer(FULL.slice(0, -1)), /not valid/],
      [bearer(`${FULL}0`), /not valid/],
    ];
    const basic = new grpc.Metadata();
    basic.set("authorization", `Basic ${Buffer.from("user:pass").toString("base64")}`);
    cases.push([basic, /exactly one "Bearer <token>" value/]);
    for (const [metadata, message] of cases) {
      const error = await failure(classifyWith(address, insecure, imageRequest(), metadata));
      assert.equal(error.code, grpc.status.UNAUTHENTICATED, error.details);
      assert.match(error.details, message);
    }
  });

  it("answers PERMISSION_DENIED for a model the token is not granted, naming it and the grant", async () => {
    const error = await failure(classifyWith(address, insecure, imageRequest(), bearer(OTHER_ONLY)));
    assert.equal(error.code, grpc.status.PERMISSION_DENIED);
    assert.match(error.details, /may not call model "mnist-ctm" \(request field model\); it is granted: other-model/);

    const client = new CtmTestClient(address);
    const getModel = client.raw.GetModel as (
      r: object,
      m: grpc.Metadata,
      c: grpc.requestCallback<{ name: string }>,
    ) => void;
    const viaGetModel = await failure(
      new Promise((resolve, reject) =>
        getModel.call(client.raw, { name: MODEL_NAME }, bearer(OTHER_ONLY), (e, r) => (e ? reject(e) : resolve(r))),
      ),
    );
    const granted = await new Promise<{ name: string }>((resolve, reject) =>
      getModel.call(client.raw, { name: MODEL_NAME }, bearer(FROM_FILE), (e, r) =>
        e ? reject(e) : resolve(r as { name: string }),
      ),
    );
    client.close();
    assert.equal(viaGetModel.code, grpc.status.PERMISSION_DENIED);
    assert.match(viaGetModel.details, /request field name/);
    assert.equal(granted.name, MODEL_NAME);
  });

  it("keeps health and metrics open to probes, and reflection behind the token", async () => {
    assert.deepEqual(await healthOf(address, [""], insecure), ["SERVING"]);
    assert.match(await t.metrics(), /ctm_requests_total/);

    const client = new grpc.Client(address, insecure);
    const identity = (b: Buffer) => b;
    const reflect = (metadata: grpc.Metadata) =>
      new Promise<grpc.StatusObject>((resolve) => {
        const call = client.makeBidiStreamRequest(
          "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
          identity,
          identity,
          metadata,
        );
        call.on("data", () => call.end());
        call.on("error", () => undefined);
        call.on("status", resolve);
        // list_services = "" (field 7): an empty string is still a request.
        call.write(Buffer.from([0x3a, 0x00]));
      });
    const refused = await reflect(new grpc.Metadata());
    const allowed = await reflect(bearer(FULL));
    client.close();
    assert.equal(refused.code, grpc.status.UNAUTHENTICATED);
    assert.equal(allowed.code, grpc.status.OK);
  });
});

describe("security start-up errors", () => {
  const expectStartFailure = async (config: Parameters<typeof testConfig>[0], message: RegExp) => {
    await assert.rejects(
      startServer(testConfig(config), { logger: createLogger("info", { write: () => {} }) }),
      message,
    );
  };

  it("names the flag and file of a certificate or key it cannot use", async () => {
    await expectStartFailure(
      { tls: { ...SERVER_TLS, cert: "/nonexistent/server.pem" } },
      /--tls-cert: cannot read \/nonexistent\/server\.pem/,
    );
    await expectStartFailure(
      { tls: { ...SERVER_TLS, key: fixture("server.pem") } },
      /--tls-key: .*server\.pem holds no PEM private key/,
    );
    await expectStartFailure(
      { tls: { ...SERVER_TLS, clientCa: fixture("client.key") } },
      /--tls-client-ca: .*client\.key holds no PEM certificate/,
    );
  });

  it("refuses short tokens and unreadable or empty token files, naming them", async () => {
    await expectStartFailure(
      { auth: { tokens: ["short"], tokensFile: null } },
      /token 1 of --auth-tokens \/ CTM_AUTH_TOKENS: a token must have at least 16 characters, got 5/,
    );
    const dir = mkdtempSync(join(tmpdir(), "ctm-tokens-"));
    const empty = join(dir, "empty");
    writeFileSync(empty, "# nothing here\n\n");
    await expectStartFailure({ auth: { tokens: [], tokensFile: empty } }, /empty holds no tokens/);
    const weak = join(dir, "weak");
    writeFileSync(weak, "a-long-enough-token-1234\nweak model\n");
    await expectStartFailure({ auth: { tokens: [], tokensFile: weak } }, /weak line 2: a token must have at least 16/);
    await expectStartFailure(
      { auth: { tokens: [], tokensFile: join(dir, "missing") } },
      /--auth-tokens-file: cannot read .*missing/,
    );
  });
});

describe("TokenTable", () => {
  it("finds exactly the configured tokens and their grants", () => {
    const table = TokenTable.load({ tokens: ["aaaaaaaaaaaaaaaa-1", "bbbbbbbbbbbbbbbb-2"], tokensFile: null });
    assert.ok(table);
    assert.equal(table.size, 2);
    assert.ok(table.find("aaaaaaaaaaaaaaaa-1"));
    assert.ok(table.find("bbbbbbbbbbbbbbbb-2"));
    for (const wrong of ["", "aaaaaaaaaaaaaaaa-", "aaaaaaaaaaaaaaaa-12", "AAAAAAAAAAAAAAAA-1"])
      assert.equal(table.find(wrong), undefined, wrong);
    assert.equal(TokenTable.load({ tokens: [], tokensFile: null }), null);
  });
});
