/**
 * `npm start`: serve every model in the models folder until SIGTERM or SIGINT.
 * Run with --help for the options.
 */
import * as grpc from "@grpc/grpc-js";
import { ConfigError, helpText, parseConfig } from "./config.ts";
import { ListenError } from "./listenError.ts";
import { createLogger } from "./logger.ts";
import { startServer } from "./server.ts";

let config: ReturnType<typeof parseConfig>;
try {
  config = parseConfig(process.argv.slice(2), process.env);
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(`ctm-serve: ${error.message}`);
  process.exit(2);
}
if (config === "help") {
  console.log(helpText());
  process.exit(0);
}

const log = createLogger(config.logLevel);
// grpc-js's own error lines go to the log as warnings, not raw to stderr; the one it writes when a
// port cannot be bound is dropped, since the start-up error below says the same, naming the flag.
grpc.setLogger({
  error: (...args: unknown[]) => {
    const text = args.map(String).join(" ");
    if (!/No address added out of total/.test(text)) log.warn({ component: "grpc-js" }, text);
  },
});
log.info({ config }, "starting");
try {
  const server = await startServer(config, { logger: log });
  let signals = 0;
  const stop = (signal: NodeJS.Signals) => {
    // A second signal means "now": skip the rest of the grace period.
    if (++signals > 1) {
      log.warn({ signal }, "second signal; exiting without waiting");
      process.exit(1);
    }
    log.info({ signal }, "signal received");
    server.shutdown().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
} catch (error) {
  if (error instanceof ListenError) {
    // A port in use is a mistake to correct, not a bug: one line, no stack.
    log.fatal(error.message);
    console.error(`ctm-serve: ${error.message}`);
  } else {
    log.fatal({ err: error }, "could not start");
  }
  process.exit(1);
}
