"""graphCallCost.ts in Python onnxruntime: the tick graph 3000 times at batch 1 on its own state, the
encoder every 15th call; same thread count, no spinning, same optimisation level.

    node scripts/py.mjs server/bench/probes/graph_call_cost.py MODEL_DIR [threads]
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main() -> None:
    folder = Path(sys.argv[1])
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    manifest = json.loads((folder / "manifest.json").read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    graphs = manifest["graphs"]
    encoder = ort.InferenceSession(
        str(folder / graphs["encoder"]["file"]),
        options,
        providers=["CPUExecutionProvider"],
    )
    tick = ort.InferenceSession(
        str(folder / graphs["tick"]["file"]),
        options,
        providers=["CPUExecutionProvider"],
    )
    input_name = graphs["encoder"]["inputs"][0]["name"]
    x = np.full([1, *manifest["input"]["shape"]], 0.1, np.float32)
    encoded = dict(
        zip([o.name for o in encoder.get_outputs()], encoder.run(None, {input_name: x}))
    )
    feeds = {c["name"]: encoded[c["name"]] for c in manifest["context"]}
    for s in manifest["state"]:
        feeds[s["input"]] = encoded[s["init"]]
    names = [o.name for o in tick.get_outputs()]
    ticks, encoder_runs = [], []
    for i in range(3000):
        started = time.perf_counter()
        out = dict(zip(names, tick.run(None, feeds)))
        ticks.append((time.perf_counter() - started) * 1000)
        for s in manifest["state"]:
            feeds[s["input"]] = out[s["output"]]
        if i % 15 == 0:
            started = time.perf_counter()
            encoder.run(None, {input_name: x})
            encoder_runs.append((time.perf_counter() - started) * 1000)
    print(
        f"onnxruntime {ort.__version__} (Python), {threads} thread(s): tick run {np.median(ticks[500:]):.3f} ms, "
        f"encoder run {np.median(encoder_runs[30:]):.3f} ms"
    )


if __name__ == "__main__":
    main()
