#!/usr/bin/env bash
# `npm run bench:scale` for every preset on the CUDA execution provider, in one command:
#
#   npm run bench:scale:cuda [-- EXTRA bench:scale FLAGS]      e.g. -- --ticks 50 --seconds 20
#   PRESETS="maze imagenet" npm run bench:scale:cuda
#
# Needs an NVIDIA GPU with a driver for CUDA 12, the CUDA 12 runtime and cuDNN 9 on the loader path,
# and onnxruntime-node's CUDA provider, which .npmrc keeps npm from fetching (docs/deploy.md, "GPU"):
#   node node_modules/onnxruntime-node/script/install.js --onnxruntime-node-install=cuda12
# The export runs in PyTorch on the CPU (the .venv as it is), so no CUDA build of torch is needed.
# Results go to out/scale-cuda/PRESET/ (scale.json, scale.png); the table of each run to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="Usage: npm run bench:scale:cuda [-- EXTRA bench:scale FLAGS]

Runs npm run bench:scale for each preset (PRESETS, default: mnist maze imagenet) with --provider cuda,
which fails rather than falls back to the CPU. Extra flags go to every run (e.g. -- --ticks 50
--seconds 20; npm run bench:scale -- --help lists them). Results go to out/scale-cuda/PRESET/.

Needs an NVIDIA GPU with a driver for CUDA 12, the CUDA 12 runtime and cuDNN 9 on the loader path, and
onnxruntime-node's CUDA provider:
  node node_modules/onnxruntime-node/script/install.js --onnxruntime-node-install=cuda12"
for arg in "$@"; do
  if [[ $arg == --help || $arg == -h ]]; then
    echo "$usage"
    exit 0
  fi
done
provider=node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so
if [[ ! -f $provider ]]; then
  echo "$provider is missing: install onnxruntime-node's CUDA provider first (see the top of $0)" >&2
  exit 1
fi
for preset in ${PRESETS:-mnist maze imagenet}; do
  echo "== $preset, --provider cuda ($(date -u +%FT%TZ); $(uptime))" >&2
  # --provider cuda fails rather than falling back: a run on the CPU must not pass for a GPU run.
  npm run bench:scale -- --preset "$preset" --provider cuda --out "out/scale-cuda/$preset" "$@"
done
