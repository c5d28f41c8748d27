/**
 * A client pointed at the wrong place says what to check. grpc-js alone says "No connection
 * established ... Resolution note: " (nothing after the note) for a stopped server and "Protocol
 * error" for the playground's HTTP port. The command-line client, the health probe and the load
 * generator's connection are run against a closed port, a real server's playground port, a TLS port
 * spoken to in plaintext and a plaintext port spoken to over TLS.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type * as grpc from "@grpc/grpc-js";
import { CtmConnection, freePort } from "../../../tools/harness/index.ts";
import { MODEL_NAME, REPO, samples, startTestServer, type TestServer } from "../../../tools/harness/testServer.ts";

const run = promisify(execFile);
const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/tls/${name}`, import.meta.url));
const SERVER_TLS = { cert: fixture("server.pem"), key: fixture("server.key"), clientCa: null };

/** What the process printed on stderr, and its exit code; it must fail. */
async function failing(
  command: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number; output: string }> {
  try {
    await run(process.execPath, ["--import", "tsx", ...command], { cwd: REPO, env, encoding: "utf8", timeout: 30_000 });
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, output: failed.stdout + failed.stderr };
  }
  throw new Error(`${command.join(" ")} succeeded, but it should have failed`);
}

/** The load generator's first call, as `npm run loadtest` makes it. */
async function loadtestFailure(address: string, tls: { ca: string } | null = null): Promise<grpc.ServiceError> {
  const connection = CtmConnection.open({ address, tls, token: undefined, connections: 1 });
  try {
    await connection.pickModel(MODEL_NAME, new Date(Date.now() + 10_000));
  } catch (error) {
    return error as grpc.ServiceError;
  } finally {
    connection.close();
  }
  throw new Error("the call succeeded, but it should have failed");
}

const RAW = /Resolution note: ?$|^Protocol error$/m;

describe("a client that cannot reach a gRPC server says what to check", () => {
  let plain: TestServer;
  let secure: TestServer;
  let closed: string;
  let playground: string;
  let image: string;

  before(async () => {
    plain = await startTestServer({ http: { host: "127.0.0.1", port: 0 } });
    secure = await startTestServer({ tls: SERVER_TLS, metrics: null });
    closed = `127.0.0.1:${await freePort()}`;
    playground = `127.0.0.1:${plain.server.httpPort}`;
    image = `models/${MODEL_NAME}/1/samples/${samples()[0]?.file}`;
  });
  after(async () => {
    await plain.close();
    await secure.close();
  });

  const classify = (address: string) =>
    failing(["tools/classify/classify.ts", image, "--model", MODEL_NAME, "--address", address]);

  it("classify, at a port where nothing listens: is the server running, and which flag points at it", async () => {
    const { code, output } = await classify(closed);
    assert.equal(code, 1);
    assert.match(output, new RegExp(`nothing is listening on ${closed} \\(connection refused\\)`));
    assert.match(output, /Is the server running\? Start it with npm start/);
    assert.match(output, /point --address \(or CTM_ADDRESS\) at the server's gRPC port \(--port, 50051 by default\)/);
    assert.doesNotMatch(output, RAW);
  });

  it("classify, at the playground's HTTP port: not gRPC, which port that may be, and the gRPC port to use", async () => {
    const { code, output } = await classify(playground);
    assert.equal(code, 1);
    assert.match(output, new RegExp(`${playground} answered, but not as a gRPC server`));
    assert.match(output, /the playground's HTTP port \(--http-port/);
    assert.match(output, /point --address \(or CTM_ADDRESS\) at the server's gRPC port/);
    assert.doesNotMatch(output, RAW);
  });

  it("classify, at a TLS port: this client speaks plaintext only, and who can speak TLS", async () => {
    const { output } = await classify(secure.address);
    assert.match(output, /If the server was started with --tls-cert, this client cannot speak TLS to it/);
  });

  it("the health probe (npm run health), with CTM_PORT a port where nothing listens: the variables to check", async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, CTM_HOST: "127.0.0.1", CTM_PORT: closed.split(":")[1] };
    delete env.CTM_HEALTH_PORT;
    const { code, output } = await failing(["server/src/cli/healthProbe.ts"], env);
    assert.equal(code, 1);
    assert.match(output, /nothing is listening on .* Is the server running\?/);
    assert.match(output, /check that CTM_HOST and CTM_PORT \(or CTM_HEALTH_PORT\) here are the server's/);
    assert.doesNotMatch(output, RAW);
  });

  it("the load generator keeps the gRPC code and explains in the details", async () => {
    const refused = await loadtestFailure(closed);
    assert.equal(refused.code, 14, "UNAVAILABLE");
    assert.match(refused.details, /nothing is listening on .*Is the server running\?/);
    assert.match((await loadtestFailure(playground)).details, /not as a gRPC server/);
    assert.match(
      (await loadtestFailure(secure.address)).details,
      /If the server was started with --tls-cert, give --tls-ca/,
    );
    assert.match(
      (await loadtestFailure(plain.address, { ca: fixture("ca.pem") })).details,
      /the TLS handshake with .* failed \(TLS: wrong version number\): a server started without --tls-cert speaks plaintext \(leave out --tls-ca\)/,
    );
  });

  it("leaves the server's own answers as they are", async () => {
    const error = await failing([
      "tools/classify/classify.ts",
      image,
      "--model",
      "no-such-model",
      "--address",
      plain.address,
    ]);
    assert.match(error.output, /NOT_FOUND: /);
    assert.doesNotMatch(error.output, /is the server running/i);
  });
});
