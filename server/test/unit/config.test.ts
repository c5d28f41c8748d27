import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { FLAGS_DOC, flagsDoc } from "../../../scripts/flags-table.ts";
import { CONFIG_OPTIONS, ConfigError, helpText, parseConfig, type ServerConfig } from "../../src/config.ts";

const parse = (argv: string[], env: NodeJS.ProcessEnv = {}, cpus = 8) => parseConfig(argv, env, cpus) as ServerConfig;

describe("server configuration", () => {
  it("has the documented defaults", () => {
    assert.deepEqual(parse([]), {
      host: "127.0.0.1",
      port: 50051,
      modelsDir: "models",
      provider: "auto",
      threads: 8,
      workers: 1,
      workerNice: 5,
      maxBatch: 64,
      maxQueue: 256,
      latencyObjectiveMs: 0,
      // Half the (8) CPUs: decodes leave the other half to the event loop and the workers.
      decodeSlots: 4,
      streamWriteIdleMs: 30000,
      receiveTimeoutMs: 30000,
      metrics: { host: "127.0.0.1", port: 9464 },
      http: { host: "127.0.0.1", port: 8080 },
      health: null,
      graceMs: 10000,
      maxConnectionAgeMs: 0,
      // On by default: nothing else closes a connection that nghttp2 has ended (docs/reliability.md).
      keepaliveMs: 20000,
      keepaliveTimeoutMs: 10000,
      maxConnectionIdleMs: 300000,
      logLevel: "info",
      tls: null,
      auth: { tokens: [], tokensFile: null },
      limits: {
        // 0: derived from the served models when the server starts (transport/grpc/requestSize.ts).
        maxMessageBytes: 0,
        // Enough for a phone photo (a 4032 x 3024 JPEG is about 3.7 MB).
        maxImageBytes: 8 * 1024 * 1024,
        maxTensorValues: 0,
        maxInflightBytes: 128 * 1024 * 1024,
        // 0: derived from the served models' image inputs (runtime/imagePixelLimit.ts).
        maxImagePixels: 0,
        maxImageSide: 16384,
        imageFormats: ["png", "jpeg", "webp", "gif", "tiff"],
        maxTicks: 0,
        maxConcurrentStreams: 256,
      },
      onModelError: "exit",
      modelControl: {
        mode: "none",
        pollMs: 15000,
        loadModels: [],
        versionPolicies: { fallback: { kind: "latest", count: 1 }, models: new Map() },
      },
    });
  });

  it("reads the request limits from their flags and variables", () => {
    const limits = parse(
      [
        "--max-message-bytes",
        "65536",
        "--max-image-pixels",
        "1000000",
        "--max-image-side",
        "2048",
        "--image-formats",
        " PNG, jpeg,png ",
        "--max-ticks",
        "5",
        "--max-image-bytes",
        "100000",
        "--max-tensor-values",
        "784",
      ],
      { CTM_MAX_CONCURRENT_STREAMS: "8", CTM_MAX_INFLIGHT_BYTES: "1048576" },
    ).limits;
    assert.deepEqual(limits, {
      maxMessageBytes: 65536,
      maxImageBytes: 100_000,
      maxTensorValues: 784,
      maxInflightBytes: 1_048_576,
      maxImagePixels: 1_000_000,
      maxImageSide: 2048,
      imageFormats: ["png", "jpeg"],
      maxTicks: 5,
      maxConcurrentStreams: 8,
    });
  });

  it("reads every option from its flag and from its environment variable, the flag winning", () => {
    const values: Record<string, [string, unknown]> = {
      host: ["0.0.0.0", "0.0.0.0"],
      port: ["6000", 6000],
      modelsDir: ["/srv/models", "/srv/models"],
      provider: ["cpu", "cpu"],
      threads: ["3", 3],
      workers: ["2", 2],
      workerNice: ["0", 0],
      maxBatch: ["16", 16],
      maxQueue: ["0", 0],
      streamWriteIdleMs: ["1500", 1500],
      graceMs: ["500", 500],
      keepaliveMs: ["0", 0],
      keepaliveTimeoutMs: ["500", 500],
      maxConnectionIdleMs: ["60000", 60000],
      logLevel: ["debug", "debug"],
    };
    for (const option of CONFIG_OPTIONS) {
      const entry = values[option.key];
      if (!entry) continue;
      const [text, parsed] = entry;
      assert.equal(parse([option.flag, text])[option.key as keyof ServerConfig], parsed, option.flag);
      assert.equal(parse([`${option.flag}=${text}`])[option.key as keyof ServerConfig], parsed, `${option.flag}=`);
      assert.equal(parse([], { [option.env]: text })[option.key as keyof ServerConfig], parsed, option.env);
    }
    assert.equal(parse(["--port", "7000"], { CTM_PORT: "6000" }).port, 7000);
  });

  it("reads TLS, tokens and the model-error policy, refusing half a TLS configuration", () => {
    const config = parse(["--tls-cert", "s.pem", "--tls-key", "s.key", "--on-model-error", "skip"], {
      CTM_TLS_CLIENT_CA: "ca.pem",
      CTM_AUTH_TOKENS: " token-one-0123456789 , ,token-two-0123456789",
      CTM_AUTH_TOKENS_FILE: "/run/secrets/tokens",
    });
    assert.deepEqual(config.tls, { cert: "s.pem", key: "s.key", clientCa: "ca.pem" });
    assert.deepEqual(config.auth, {
      tokens: ["token-one-0123456789", "token-two-0123456789"],
      tokensFile: "/run/secrets/tokens",
    });
    assert.equal(config.onModelError, "skip");
    assert.throws(() => parse(["--tls-cert", "s.pem"]), /--tls-cert needs --tls-key as well/);
    assert.throws(() => parse([], { CTM_TLS_KEY: "s.key" }), /CTM_TLS_KEY needs --tls-cert as well/);
    assert.throws(() => parse(["--tls-client-ca", "ca.pem"]), /--tls-client-ca needs --tls-cert and --tls-key/);
    assert.throws(() => parse(["--on-model-error", "ignore"]), /--on-model-error must be one of exit, skip/);
  });

  it("sizes threads from the machine and the worker count", () => {
    assert.equal(parse(["--workers", "2"], {}, 8).threads, 4);
    assert.equal(parse(["--workers", "4"], {}, 2).threads, 1);
    assert.equal(parse(["--workers", "2", "--threads", "3"], {}, 8).threads, 3);
  });

  it("configures metrics, with 0 disabling them", () => {
    assert.deepEqual(parse(["--host", "0.0.0.0", "--metrics-port", "9100"]).metrics, { host: "0.0.0.0", port: 9100 });
    assert.deepEqual(parse(["--metrics-host", "127.0.0.2"]).metrics, { host: "127.0.0.2", port: 9464 });
    assert.equal(parse(["--metrics-port", "0"]).metrics, null);
  });

  it("serves the playground on --http-port / CTM_HTTP_PORT (default 8080) on --host, with 0 disabling it", () => {
    assert.deepEqual(parse([]).http, { host: "127.0.0.1", port: 8080 });
    assert.deepEqual(parse(["--host", "0.0.0.0"], { CTM_HTTP_PORT: "8081" }).http, { host: "0.0.0.0", port: 8081 });
    assert.equal(parse(["--http-port", "0"], { CTM_HTTP_PORT: "8081" }).http, null);
    assert.throws(
      () => parse(["--http-port", "50051"]),
      /--http-port \(50051\) must differ from the default of --port \(50051\)/,
    );
    assert.throws(
      () => parse([], { CTM_HTTP_PORT: "9464" }),
      /CTM_HTTP_PORT \(9464\) must differ from the default of --metrics-port/,
    );
    assert.throws(() => parse(["--http-port", "70000"]), /--http-port must be an integer in \[0, 65535\], got "70000"/);
  });

  it("names the flag or variable and the bad value", () => {
    const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
      [["--port", "70000"], {}, /--port must be an integer in \[0, 65535\], got "70000"/],
      [[], { CTM_PORT: "http" }, /CTM_PORT must be an integer in \[0, 65535\], got "http"/],
      [["--provider", "tpu"], {}, /--provider must be one of auto, cpu, cuda, got "tpu"/],
      [["--max-batch", "0"], {}, /--max-batch must be an integer in \[1, 4096\], got "0"/],
      [["--max-queue", "-1"], {}, /--max-queue must be an integer in \[0, 1000000\], got "-1"/],
      [["--threads", "1.5"], {}, /--threads must be an integer in \[1, 1024\], got "1.5"/],
      [["--workers", "0"], {}, /--workers must be an integer in \[1, 64\], got "0"/],
      [["--worker-nice", "20"], {}, /--worker-nice must be an integer in \[0, 19\], got "20"/],
      [["--grace-ms", "soon"], {}, /--grace-ms must be an integer/],
      [
        [],
        { CTM_MAX_CONNECTION_AGE_MS: "5m" },
        /CTM_MAX_CONNECTION_AGE_MS must be an integer in \[0, 86400000\], got "5m"/,
      ],
      [
        [],
        { CTM_LOG_LEVEL: "loud" },
        /CTM_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "loud"/,
      ],
      [["--models-dir", ""], {}, /--models-dir must not be empty/],
      [["--max-message-bytes", "100"], {}, /--max-message-bytes must be an integer in \[1024, 1073741824\], got "100"/],
      [["--max-image-pixels", "0"], {}, /--max-image-pixels must be an integer in \[1, 1000000000\], got "0"/],
      [[], { CTM_MAX_IMAGE_SIDE: "big" }, /CTM_MAX_IMAGE_SIDE must be an integer in \[1, 1000000\], got "big"/],
      [["--max-ticks", "-1"], {}, /--max-ticks must be an integer in \[0, 1000000\], got "-1"/],
      [["--max-concurrent-streams", "0"], {}, /--max-concurrent-streams must be an integer in \[1, 1000000\], got "0"/],
      [
        ["--image-formats", "png,svg"],
        {},
        /--image-formats must be a comma-separated list of png, jpeg, webp, gif, tiff, got "png,svg"/,
      ],
      [["--image-formats", " , "], {}, /--image-formats must be a comma-separated list/],
      [["--port"], {}, /--port needs a value/],
      [["--port", "--host"], {}, /--port needs a value/],
      [["--prot", "1"], {}, /unknown argument "--prot"/],
      [["--metrics-port", "6000", "--port", "6000"], {}, /--metrics-port \(6000\) must differ from --port \(6000\)/],
    ];
    for (const [argv, env, message] of cases) {
      assert.throws(
        () => parse(argv, env),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
        argv.join(" "),
      );
    }
  });

  it("--help lists every flag and environment variable", () => {
    assert.equal(parseConfig(["--port", "1", "--help"], {}), "help");
    const help = helpText();
    for (const option of CONFIG_OPTIONS) {
      assert.match(help, new RegExp(`${option.flag} <value>\\s+${option.env}\\s`));
    }
  });

  it("names each option's flag and variable after its key, once each", () => {
    const kebab = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
    for (const option of CONFIG_OPTIONS) {
      assert.equal(option.flag, `--${kebab(option.key)}`, option.key);
      assert.equal(option.env, `CTM_${kebab(option.key).toUpperCase().replaceAll("-", "_")}`, option.key);
    }
    assert.equal(new Set(CONFIG_OPTIONS.map((o) => o.flag)).size, CONFIG_OPTIONS.length);
  });

  it("reads the model-control options, refusing one its mode would ignore before reading its value", () => {
    const poll = parse(["--model-control", "poll", "--repository-poll-ms", "250"], { CTM_VERSION_POLICY: "all" });
    assert.deepEqual(poll.modelControl, {
      mode: "poll",
      pollMs: 250,
      loadModels: [],
      versionPolicies: { fallback: { kind: "all" }, models: new Map() },
    });
    const explicit = parse(["--model-control=explicit", "--load-model", " mnist-ctm, ,maze-ctm"]);
    assert.deepEqual(explicit.modelControl.loadModels, ["mnist-ctm", "maze-ctm"]);
    const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
      [
        ["--repository-poll-ms", "5"],
        {},
        /^--repository-poll-ms applies only with --model-control poll; the default of --model-control is none$/,
      ],
      [
        ["--model-control", "poll"],
        { CTM_LOAD_MODEL: "*" },
        /^CTM_LOAD_MODEL applies only with --model-control explicit; --model-control is poll$/,
      ],
      [
        ["--model-control", "poll", "--repository-poll-ms", "5"],
        {},
        /^--repository-poll-ms must be an integer in \[10, 86400000\], got "5"$/,
      ],
      [["--model-control", "always"], {}, /^--model-control must be one of none, poll, explicit, got "always"$/],
      [[], { CTM_VERSION_POLICY: "newest:2" }, /^CTM_VERSION_POLICY must be latest, latest:N, all or specific/],
    ];
    for (const [argv, env, message] of cases) {
      assert.throws(
        () => parse(argv, env),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
        `${argv.join(" ")} ${JSON.stringify(env)}`,
      );
    }
  });

  it("docs/flags.md is what npm run docs:flags generates from the option table", () => {
    const committed = readFileSync(FLAGS_DOC, "utf8");
    assert.ok(
      committed === flagsDoc(),
      "docs/flags.md differs from the option table in server/src/config.ts: run npm run docs:flags",
    );
    for (const option of CONFIG_OPTIONS) {
      const row = committed.split("\n").find((line) => line.startsWith(`| \`${option.flag}\` | \`${option.env}\` |`));
      assert.ok(row, `a table row for ${option.flag}`);
      assert.ok(row.includes(option.parser.accepts), `${option.flag} says what it accepts`);
      if (option.default)
        assert.ok(row.includes(`\`${option.default}\``), `${option.flag}'s default ${option.default}`);
    }
  });
});
