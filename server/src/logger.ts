/** Structured JSON logs (pino) on stdout, or on a given stream (tests capture them). */
import { type DestinationStream, type Logger, pino } from "pino";

export type { Logger } from "pino";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options = { level, base: { service: "ctm-serve" } };
  return destination ? pino(options, destination) : pino(options);
}
