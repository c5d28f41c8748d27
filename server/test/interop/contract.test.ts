/**
 * proto/ctm/v1/ctm.proto as tools read it. ghz (and anything else built on protoparse) refuses a
 * proto3 field labelled `optional` ("proto3 must omit labels other than 'repeated'"), so the halt
 * policy's two (0, 1] fields spend 0 on "not set" instead; these tests hold the file to that and the
 * server to the meaning of 0. ghz itself runs against the file when it is installed.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import {
  MODEL_NAME,
  REPO,
  type Sample,
  samples,
  startTestServer,
  type TestServer,
} from "../../../tools/harness/testServer.ts";
import { CTM_PROTO } from "../../src/transport/ctmV1/ctmProtocol.ts";
import { PROTO_DIR } from "../../src/transport/grpc/protoLoading.ts";

describe("the contract file", () => {
  it("labels no field but repeated, as proto3 parsers other than protoc's require", () => {
    const source = readFileSync(join(PROTO_DIR, CTM_PROTO), "utf8").replace(/\/\/.*$/gm, "");
    const labelled = source
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => /^(optional|required)\s/.test(line));
    assert.deepEqual(labelled, []);
  });

  describe("against a server", () => {
    let t: TestServer;
    let sample: Sample;
    before(async () => {
      t = await startTestServer();
      sample = samples()[3] as Sample;
    });
    after(() => t.close());

    it("takes 0 as 'not set' for certainty_threshold and target_accuracy", async () => {
      const image = { data: sample.png };
      const unset = await t.client.classify({ model: MODEL_NAME, image, halt_policy: { certainty_threshold: 0 } });
      assert.equal(unset.threshold_used, 0.9);
      assert.equal(unset.applied_policy.certainty_threshold, 0.9);
      assert.equal(unset.applied_policy.target_accuracy, 0);
      const threshold = await t.client.classify({
        model: MODEL_NAME,
        image,
        halt_policy: { certainty_threshold: 0.7, target_accuracy: 0 },
      });
      assert.equal(threshold.threshold_used, 0.7);
    });

    const ghz = join(homedir(), "go", "bin", "ghz");
    it("is read by ghz", { skip: !existsSync(ghz) && `${ghz} is not installed` }, async () => {
      const data = {
        model: MODEL_NAME,
        image: { data: sample.png.toString("base64") },
        halt_policy: { certainty_threshold: 0.5 },
      };
      const { stdout } = await promisify(execFile)(
        ghz,
        [
          "--insecure",
          "--proto",
          join("proto", CTM_PROTO),
          "--import-paths",
          "proto",
          "--call",
          "ctm.v1.CtmService.Classify",
          "-d",
          JSON.stringify(data),
          "-n",
          "4",
          "-c",
          "2",
          "--format",
          "json",
          t.address,
        ],
        { cwd: REPO, encoding: "utf8", timeout: 60_000 },
      );
      const report = JSON.parse(stdout) as { count: number; statusCodeDistribution: Record<string, number> };
      assert.equal(report.count, 4);
      assert.deepEqual(report.statusCodeDistribution, { OK: 4 });
    });
  });
});
