/**
 * Worker-thread entry: one CtmBatch (one encoder and one tick session) driven by one Scheduler. The
 * main thread admits, credits and cancels requests by message and gets StepMessages back.
 */
import { parentPort, receiveMessageOnPort, workerData } from "node:worker_threads";
import { CtmBatch } from "../runtime/ctmBatch.ts";
import { Scheduler, transferablesOf } from "./scheduler.ts";
import { lowerThreadPriority } from "./threadPriority.ts";
import type { FromWorker, ToWorker, WorkerData } from "./workerProtocol.ts";

const port = parentPort;
if (!port) throw new Error("schedulerWorker.ts must run in a worker thread. This is a bug.");
const post = (message: FromWorker, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

const { model, session, niceness, warmUpRows } = workerData as WorkerData;
// Before the sessions exist, so that their intra-op threads inherit it.
if (niceness > 0) lowerThreadPriority(niceness);
let batch: CtmBatch;
try {
  batch = await CtmBatch.open(model, session);
  await batch.warmUp(warmUpRows);
} catch (error) {
  post({ type: "failed", message: error instanceof Error ? error.message : String(error) });
  process.exit(1);
}
function deliver(messages: ToWorker[]): void {
  for (const message of messages) {
    if (message.type === "admit") scheduler.admit(message);
    else if (message.type === "cancel") scheduler.cancel(message.id);
    else if (message.type === "credit") for (const [id, tick] of message.credits) scheduler.credit(id, tick);
    else scheduler.stop();
  }
}
const scheduler = new Scheduler(
  batch,
  model.manifest.output,
  (step) => post(step, transferablesOf(step)),
  Date.now,
  () => {
    for (let next = receiveMessageOnPort(port); next; next = receiveMessageOnPort(port)) deliver(next.message);
  },
);
port.on("message", deliver);
post({ type: "ready", provider: batch.provider, fallbackReason: batch.fallbackReason });
await scheduler.run();
await batch.close();
post({ type: "stopped" });
// Ends this thread only; the session's native threads go with it.
process.exit(0);
