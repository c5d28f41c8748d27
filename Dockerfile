# syntax=docker/dockerfile:1
#
# ctm-serve container images. Two targets:
#
#   docker build -t ctm-serve:0.1.0 .                        CPU (the default, last target)
#   docker build --target cuda -t ctm-serve:0.1.0-cuda .     NVIDIA GPU: CUDA 12 + cuDNN 9
#
# Both run the TypeScript sources with tsx (a production dependency), exactly as `npm start` does, as
# uid 1000 with the code and models read-only, and answer the gRPC health service from the first
# second (NOT_SERVING until the models have loaded). Every server option is an environment variable
# (CTM_*, see `docker run --rm ctm-serve:0.1.0 --help`) or a flag appended to `docker run`.
# docs/deploy.md explains the choices; deploy/test/dockerfile.test.ts runs these steps as a script.

ARG NODE_IMAGE=node:20-bookworm-slim
# onnxruntime-node 1.30's CUDA provider is built against CUDA 12.x and cuDNN 9.x: any 12.x runtime with
# cuDNN 9 works (CUDA minor-version compatibility); CUDA 13 or cuDNN 8 do not. A 12.8 base needs an
# NVIDIA driver of branch 570 or later; for older drivers pick an older 12.x base (docs/deploy.md).
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------- production node_modules
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: sharp, esbuild and onnxruntime-node's CPU binaries all ship inside their packages,
# so no install script is needed, and skipping them makes the result the same under every npm version
# (npm 11 may refuse to run dependency scripts). The cuda target runs onnxruntime-node's on purpose.
# onnxruntime-node ships its library for every OS and CPU (about 290 MB); only this platform's stays.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
  && cd node_modules/onnxruntime-node/bin/napi-v6 \
  && find . -mindepth 2 -maxdepth 2 ! -path "./linux/$(node -p process.arch)" -exec rm -rf {} +

# ---------------------------------------------------------------- + the CUDA execution provider
FROM deps AS deps-cuda
# What .npmrc's `ignore-scripts=true` keeps other installs from doing: fetch libonnxruntime_providers_cuda.so and
# its companions (NuGet package Microsoft.ML.OnnxRuntime.Gpu.Linux 1.30.0) into onnxruntime-node's bin/.
RUN node node_modules/onnxruntime-node/script/install.js --onnxruntime-node-install=cuda12 \
  && test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so

# ---------------------------------------------------------------- GPU image
FROM ${NODE_IMAGE} AS node-binary

FROM ${CUDA_IMAGE} AS cuda
# Node itself comes from the official image (the CUDA base has none); it needs only glibc and libstdc++.
COPY --from=node-binary /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=deps-cuda /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY proto ./proto
COPY server/src ./server/src
COPY models ./models
ENV NODE_ENV=production \
  CTM_HOST=0.0.0.0 \
  CTM_PORT=50051 \
  CTM_METRICS_PORT=9464 \
  CTM_HTTP_PORT=0 \
  CTM_GRACE_MS=8000
# uid 1000 is the unprivileged `ubuntu` user of Ubuntu 24.04 bases (older bases have no name for it,
# which Node does not need); numeric so that Kubernetes' runAsNonRoot can check it. It owns nothing
# under /app.
USER 1000:1000
EXPOSE 50051 9464
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["node", "--import", "tsx", "server/src/cli/healthProbe.ts"]
STOPSIGNAL SIGTERM
# Node is PID 1 and handles SIGTERM itself: health turns NOT_SERVING, in-flight requests get
# CTM_GRACE_MS to finish, then it exits 0. 8 s + 1 s of stream closing fits `docker stop`'s 10 s.
ENTRYPOINT ["node", "--import", "tsx", "server/src/main.ts"]
# Start-up fails, naming the reason, when CUDA cannot load; `docker run ... --provider auto` falls
# back to the CPU instead.
CMD ["--provider", "cuda"]

# ---------------------------------------------------------------- CPU image (default target)
FROM ${NODE_IMAGE} AS cpu
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY proto ./proto
COPY server/src ./server/src
COPY models ./models
# CTM_PROVIDER=cpu: this image has no CUDA provider, so `auto` would only log why it fell back.
ENV NODE_ENV=production \
  CTM_HOST=0.0.0.0 \
  CTM_PORT=50051 \
  CTM_METRICS_PORT=9464 \
  CTM_HTTP_PORT=0 \
  CTM_PROVIDER=cpu \
  CTM_GRACE_MS=8000
# uid 1000 is the base image's unprivileged `node` user; numeric so that Kubernetes' runAsNonRoot can
# check it. It owns nothing under /app.
USER 1000:1000
EXPOSE 50051 9464
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["node", "--import", "tsx", "server/src/cli/healthProbe.ts"]
STOPSIGNAL SIGTERM
# Node is PID 1 and handles SIGTERM itself: health turns NOT_SERVING, in-flight requests get
# CTM_GRACE_MS to finish, then it exits 0. 8 s + 1 s of stream closing fits `docker stop`'s 10 s.
ENTRYPOINT ["node", "--import", "tsx", "server/src/main.ts"]
CMD []
