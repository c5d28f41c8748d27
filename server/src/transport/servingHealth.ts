/**
 * grpc.health.v1 with a way to read it back: the one record of what is serving. The Open Inference
 * Protocol's ServerReady and ModelReady answer from it, and the health port's thread mirrors it
 * (healthPort.ts), so that they all agree with grpc.health.v1 in every state (loading, serving, a model
 * that failed to load, draining) by construction rather than by keeping a second copy in step.
 */
import { HealthImplementation, type ServingStatus, type ServingStatusMap } from "grpc-health-check";

export type HealthStatus = ServingStatus | "SERVICE_UNKNOWN";

export class ServingHealth extends HealthImplementation {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly listeners = new Set<(service: string, status: ServingStatus) => void>();

  constructor(initial: ServingStatusMap = {}) {
    super(initial);
    for (const [service, status] of Object.entries(initial)) this.statuses.set(service, status);
  }

  override setStatus(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    super.setStatus(service, status);
    for (const listener of this.listeners) listener(service, status);
  }

  /** What Health/Check answers for `service`; SERVICE_UNKNOWN where it answers NOT_FOUND. */
  statusOf(service: string): HealthStatus {
    return this.statuses.get(service) ?? "SERVICE_UNKNOWN";
  }

  /** Every service and its status now. */
  snapshot(): ServingStatusMap {
    return Object.fromEntries(this.statuses);
  }

  /** Calls `listener` on every later change; returns what stops it. */
  onChange(listener: (service: string, status: ServingStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
