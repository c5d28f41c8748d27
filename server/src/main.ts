/**
 * `npm start`: serve every model in the models folder until SIGTERM or SIGINT.
 * Run with --help for the options.
 */
import { ConfigError, helpText, parseConfig } from "./config.ts";
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
  log.fatal({ err: error }, "could not start");
  process.exit(1);
}
