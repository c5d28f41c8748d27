/**
 * The thinnest gRPC server over the same graphs: the control for benchmarks 1 and 3 (bench.ts).
 *
 * ctm.v1.CtmService/Classify runs the bare loop (bareLoop.ts) right on the event loop - no worker
 * thread, no batching, no halting policy, no checks beyond reading the tensor - and grpc.health.v1
 * answers SERVING. What it adds over the bare loop is what gRPC on this machine costs any grpc-js
 * server; what the real server adds beyond it is the server's own. It is not a server to run: one
 * request blocks every other.
 *
 *   node --import tsx server/bench/children/thinServer.ts --threads N
 *
 * Prints {"msg":"serving","port":P} on stdout once it listens (as server/src/main.ts logs it).
 */
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { loadModelFolder } from "../../src/model/modelFolder.ts";
import {
  type ClassifyRequestMessage,
  type ClassifyResponseMessage,
  loadProtocol,
} from "../../src/transport/ctmV1/ctmProtocol.ts";
import { openBareLoop } from "../parts/bareLoop.ts";
import { benchModelFolder } from "../parts/benchModel.ts";

const REPO = join(import.meta.dirname, "../../..");
const threadsAt = process.argv.indexOf("--threads");
const threads = threadsAt >= 0 ? Number(process.argv[threadsAt + 1]) : 1;

const model = loadModelFolder(benchModelFolder(REPO));
const { manifest } = model;
const bare = await openBareLoop(model, threads);

function classify(
  call: grpc.ServerUnaryCall<ClassifyRequestMessage, ClassifyResponseMessage>,
  callback: grpc.sendUnaryData<ClassifyResponseMessage>,
): void {
  const { tensor, halt_policy: policy } = call.request;
  const ticks = policy?.max_ticks || manifest.ticks.trained;
  bare.probabilities(Float32Array.from(tensor?.values ?? []), ticks).then(
    (probabilities) => {
      let best = 0;
      for (let i = 1; i < probabilities.length; i++)
        if ((probabilities[i] as number) > (probabilities[best] as number)) best = i;
      const probability = probabilities[best] as number;
      callback(null, {
        model: manifest.name,
        version: manifest.version,
        top_k: [{ index: best, label: manifest.output.labels[best] ?? String(best), probability }],
        ticks_used: ticks,
        answer_tick: ticks - 1,
      } as ClassifyResponseMessage);
    },
    (error: unknown) => callback({ code: grpc.status.INTERNAL, details: String(error) }),
  );
}

const server = new grpc.Server();
server.addService(loadProtocol().ctmService, { Classify: classify });
new HealthImplementation({ "": "SERVING" }).addToServer(server);
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  process.stdout.write(`${JSON.stringify({ msg: "serving", port })}\n`);
});
