"""The bare loop of bareLoop.ts in Python onnxruntime: the same two graphs, the same session options
(intra-op threads, no spinning, sequential, all graph optimisations), one input through the encoder
and every tick. npm run bench runs it beside the Node loop, so that a gap between the two bindings
shows up in the same run (docs/benchmarks.md, target 3).

    node scripts/py.mjs server/bench/children/bare_loop.py MODEL_DIR --threads N --requests R --ticks T [--serve]

Prints {"ms": [...], "onnxruntime": version} on stdout: milliseconds per request, after 10 warm-up runs.
With --serve it first prints {"onnxruntime": version}, then runs one request per line read from stdin
and prints its milliseconds, so that the caller can alternate it with its own measurements.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--ticks", type=int, default=0)
    parser.add_argument("--spinning", choices=["0", "1"], default="0")
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args()

    manifest = json.loads((args.model_dir / "manifest.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", args.spinning)
    open_graph = lambda name: ort.InferenceSession(
        str(args.model_dir / manifest["graphs"][name]["file"]),
        options,
        providers=["CPUExecutionProvider"],
    )
    encoder, tick = open_graph("encoder"), open_graph("tick")
    ticks = args.ticks or manifest["ticks"]["trained"]
    input_name = manifest["graphs"]["encoder"]["inputs"][0]["name"]
    golden = manifest.get("golden")
    shape = manifest["input"]["shape"]
    if golden:
        row = json.loads((args.model_dir / golden).read_text())["cases"][0]["input"]
    else:
        row = [0.0] * int(np.prod(shape))
    x = np.asarray(row, dtype=np.float32).reshape([1, *shape])
    # Every output, as the Node loop fetches them; the state outputs feed the next tick.
    tick_outputs = [o.name for o in tick.get_outputs()]

    def once() -> float:
        started = time.perf_counter()
        encoded = dict(
            zip(
                [o.name for o in encoder.get_outputs()],
                encoder.run(None, {input_name: x}),
            )
        )
        feeds = {c["name"]: encoded[c["name"]] for c in manifest["context"]}
        for s in manifest["state"]:
            feeds[s["input"]] = encoded[s["init"]]
        for _ in range(ticks):
            out = dict(zip(tick_outputs, tick.run(None, feeds)))
            for s in manifest["state"]:
                feeds[s["input"]] = out[s["output"]]
        return (time.perf_counter() - started) * 1000

    for _ in range(10):
        once()
    if args.serve:
        print(json.dumps({"onnxruntime": ort.__version__}), flush=True)
        for _ in sys.stdin:
            print(once(), flush=True)
        return
    ms = [once() for _ in range(args.requests)]
    print(json.dumps({"ms": ms, "onnxruntime": ort.__version__}))


if __name__ == "__main__":
    main()
