/**
 * grpc.health.v1 names one service per model besides the server's own ("" and ctm.v1.CtmService), so
 * that a probe or a load balancer can ask about the model it routes to: SERVING once the model loaded,
 * NOT_SERVING when it failed to load (--on-model-error skip), while it has no running worker
 * (ModelEngine.failure), and while the server drains.
 */
import { CTM_SERVICE } from "../grpc/serviceNames.ts";

/** e.g. "ctm.v1.CtmService/mnist-ctm". */
export function modelHealthService(model: string): string {
  return `${CTM_SERVICE}/${model}`;
}
