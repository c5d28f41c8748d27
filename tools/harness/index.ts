/**
 * The measurement harness that the benchmarks (server/bench), the load generator (loadtest) and the
 * tests share: typed clients for ctm.v1, the Open Inference Protocol and grpc.health.v1 (they live in
 * server/src/client, because the CLI and the container's health probe ship with the server), the
 * server's /metrics read, the server run as a child process, the open and closed load loops with the
 * per-request caller they drive, the inputs (samples, photographed digits, the reference sharp chain),
 * and raw HTTP/2 clients for attacks below gRPC.
 */

export { type CtmClient, createCtmClient } from "../../server/src/client/ctmClient.ts";
export {
  type BidiStreamingMethod,
  type CallOptions,
  type ServerStreamingMethod,
  type UnaryMethod,
  unaryMethod,
} from "../../server/src/client/grpcCalls.ts";
export { createHealthClient, type HealthClient, type ServingStatus } from "../../server/src/client/healthClient.ts";
export { createOipClient, type OipClient } from "../../server/src/client/oipClient.ts";
export { type Budget, type Drive, type DriveOptions, driveClosedLoop, type LoadCall } from "./closedLoop.ts";
export {
  answerOutcome,
  type Caller,
  type CallerOptions,
  type CallKind,
  type CallOutcome,
  CLIENT_NO_RESULT,
  makeCaller,
  type StatedGuarantee,
} from "./ctmCaller.ts";
export { type ConnectionOptions, CtmConnection, channelCredentials, type TlsOptions } from "./ctmConnection.ts";
export { digitPhoto, type PhotoOptions } from "./digitPhoto.ts";
export { freePort } from "./freePort.ts";
export {
  attack,
  BAD_OPENINGS,
  classifyRequestBytes,
  EMPTY_MESSAGE,
  eventually,
  grpcEnding,
  grpcHeaders,
  gzipMessage,
  HEALTH_CHECK,
  type Received,
  rawCall,
  serverSockets,
} from "./http2Attack.ts";
export { FLAG, FRAME, frame, PREFACE } from "./http2Frames.ts";
export { type Arrival, arrivalSchedule, driveOpenLoop, seededRandom } from "./openLoop.ts";
export {
  bucketsOf,
  type MetricSample,
  parsePrometheusText,
  scrapeMetrics,
  seriesOf,
  sumOf,
} from "./prometheus.ts";
export { reflect } from "./reflection.ts";
export { loadSamples, type Sample, type SampleInput, type SampleSet } from "./samples.ts";
export {
  type LogLine,
  ServerProcess,
  type ServerProcessOptions,
  type StartedServer,
  startServerProcess,
} from "./serverProcess.ts";
export { preprocessWithSharpChain } from "./sharpChainPreprocess.ts";
export { grpcMessage, StalledClient } from "./stalledClient.ts";
