/**
 * grpc.health.v1 with a way to follow it: the one record of what is serving. The Open Inference
 * Protocol's ServerReady and ModelReady answer from it, and the health port's thread mirrors it
 * (healthPort.ts), so that they all agree with grpc.health.v1 in every state (loading, serving, a model
 * that failed to load, draining) by construction rather than by keeping a second copy in step.
 */
import { HealthService, type ServingStatus, type WatchStatus } from "./healthService.ts";
import { modelHealthService } from "./modelHealth.ts";

export type HealthStatus = WatchStatus;

export class ServingHealth extends HealthService {
  private readonly listeners = new Set<(service: string, status: ServingStatus) => void>();

  override setStatus(service: string, status: ServingStatus): void {
    super.setStatus(service, status);
    for (const listener of this.listeners) listener(service, status);
  }

  /** Whether the whole server serves (the service "" is SERVING). */
  serving(): boolean {
    return this.statusOf("") === "SERVING";
  }

  /** Whether `model` serves (its own service, modelHealth.ts, is SERVING). */
  modelServing(model: string): boolean {
    return this.statusOf(modelHealthService(model)) === "SERVING";
  }

  /** Calls `listener` on every later change; returns what stops it. */
  onChange(listener: (service: string, status: ServingStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
