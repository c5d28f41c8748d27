"""Train a CTM: `python -m ctm.train --task mnist --out checkpoints/mnist`.

One process, or several with torchrun (DistributedDataParallel; gloo on CPU, nccl on GPUs):
    torchrun --nproc-per-node 2 -m ctm.train --task mnist ...
Each process draws its own batches (seed + rank); gradients are averaged by DDP, so the effective batch
is batch_size x processes.

`--init CKPT` starts a new run from a checkpoint's weights (a fresh optimiser and schedule), optionally
adding a halting head to it (`--set halting_hidden=64`); `--resume` continues a run exactly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .checkpoint import init_from_checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from .config import CTMConfig, RunConfig, parse_overrides
from .data import Split
from .losses import accuracy_most_certain, answers_right, halting_loss, predictions_at
from .model import CTM, Thoughts
from .paths import REPO
from .tasks import Task, get_task


class Thinking(torch.nn.Module):
    """`CTM.think` as a module's forward, so that DistributedDataParallel sees the halting head's outputs."""

    def __init__(self, model: CTM):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> Thoughts:
        return self.model.think(x)


def lr_at(step: int, run: RunConfig) -> float:
    """Linear warmup to `lr`, then cosine decay to zero at `steps`. Step is 0-based."""
    if step < run.warmup_steps:
        return run.lr * (step + 1) / run.warmup_steps
    progress = (step - run.warmup_steps) / max(1, run.steps - run.warmup_steps)
    return run.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def evaluate(model: CTM, split: Split, batch_size: int = 500) -> dict[str, float]:
    """Accuracy at the most certain tick (the paper's reading) and at the last tick; with a halting head,
    also at the tick the head rates highest (what a server answers when no threshold is reached)."""
    was_training = model.training
    model.eval()
    shape = model.config.output_shape
    reads: dict[str, list[torch.Tensor]] = {"most_certain": [], "last_tick": [], "most_halting": []}
    for start in range(0, len(split), batch_size):
        x, y = split.inputs[start : start + batch_size], split.targets[start : start + batch_size]
        thoughts = model.think(x)
        logits = thoughts.logits
        reads["most_certain"].append(accuracy_most_certain(logits, thoughts.certainty, y, shape))
        final = torch.full((len(y),), logits.shape[-1] - 1)
        reads["last_tick"].append((predictions_at(logits, final, shape) == y.reshape(len(y), -1)).float().mean(-1))
        if thoughts.halt.shape[-1]:
            reads["most_halting"].append(accuracy_most_certain(logits, thoughts.halt, y, shape))
    model.train(was_training)
    result = {}
    for name, values in reads.items():
        if not values:
            continue
        per_item = torch.cat(values)
        result[f"accuracy_{name}"] = per_item.mean().item()
        if len(shape) == 2:  # several positions: also the share of items with every position right (a solved maze)
            result[f"solved_{name}"] = (per_item == 1).float().mean().item()
    return result


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train(
    task: Task,
    model_config: CTMConfig,
    run: RunConfig,
    out: Path,
    resume: Path | None = None,
    progress: bool = True,
    init: Path | None = None,
) -> dict[str, Any]:
    """Train (or resume) and return the final metrics. Writes checkpoints and metrics.jsonl to `out`."""
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    is_main = rank == 0

    start_step, extra = 0, {}
    if resume is not None:
        extra = load_checkpoint(resume)
        model = model_from_checkpoint(extra)
        model_config, start_step = model.config, extra["step"]
    else:
        torch.manual_seed(run.seed)  # identical initial weights on every process
        model = CTM(model_config)
        if init is not None:
            fresh = init_from_checkpoint(model, load_checkpoint(init))
            if is_main:
                print(f"initialised from {init}" + (f"; fresh: {', '.join(fresh)}" if fresh else ""), flush=True)
    generator = seed_everything(run.seed + 1000 * rank)
    if "rng" in extra and not distributed:
        # Same batches and augmentations as an uninterrupted run would have drawn.
        generator.set_state(extra["rng"])
        torch.set_rng_state(extra["torch_rng"])

    if run.compile:
        # The tick is where the time goes (dozens of small kernels, 30 times a step); compiled, each
        # tick's elementwise work fuses. The loop over ticks stays in Python: unrolled, the compile took
        # minutes and the step was slower.
        model.tick = torch.compile(model.tick, dynamic=False)
    thinking = Thinking(model)
    wrapped = DistributedDataParallel(thinking) if distributed else thinking
    optimizer = torch.optim.AdamW(model.parameters(), lr=run.lr, weight_decay=run.weight_decay)
    if "optimizer" in extra:
        optimizer.load_state_dict(extra["optimizer"])

    train_split = task.split(model_config, "train")
    valid_split = task.split(model_config, "validation")
    shape = model_config.output_shape
    out.mkdir(parents=True, exist_ok=True)
    metrics_file = open(out / "metrics.jsonl", "a") if is_main else None  # noqa: SIM115
    bar = tqdm(total=run.steps, initial=start_step, disable=not (progress and is_main), dynamic_ncols=True)
    best = extra.get("metrics", {}).get("best_validation", -1.0)
    started = time.time()
    metrics: dict[str, Any] = {}

    def checkpoint(step: int, name: str, **fields: Any) -> None:
        if is_main:
            state = {"optimizer": optimizer.state_dict(), "metrics": {"best_validation": best, **metrics}}
            rng = {"rng": generator.get_state(), "torch_rng": torch.get_rng_state()}
            save_checkpoint(out / name, model, run, step, **state, **rng, **fields)

    model.train()
    for step in range(start_step, run.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, run)
        x, y = task.train_batch(model_config, train_split, run.batch_size, generator, run.augment)
        logits, certainty, halt = wrapped(x)
        loss, _, t2 = task.loss(
            logits, certainty, y, shape, run.use_most_certain, run.hold_weight, run.every_tick_weight
        )
        if halt.shape[-1]:
            halt_loss = halting_loss(halt, answers_right(logits.detach(), y, shape))
            loss = loss + run.halting_weight * halt_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), run.grad_clip or float("inf"))
        optimizer.step()
        model.clamp_decay_()

        if is_main:
            acc = (predictions_at(logits.detach(), t2, shape) == y.reshape(len(y), -1)).float().mean().item()
            record = {
                "step": step + 1,
                "loss": round(loss.item(), 5),
                "train_accuracy": round(acc, 4),
                "lr": lr_at(step, run),
                "grad_norm": round(grad_norm.item(), 4),
                "mean_certain_tick": round(t2.float().mean().item() + 1, 2),
                "elapsed_s": round(time.time() - started, 1),
            }
            if halt.shape[-1]:
                record["halting_loss"] = round(halt_loss.item(), 5)
            done = step + 1 == run.steps
            if (step + 1) % run.eval_every == 0 or done:
                validation = evaluate(model, valid_split, run.eval_batch_size)
                record.update({f"validation_{k}": round(v, 4) for k, v in validation.items()})
                metrics = {"step": step + 1, **{f"validation_{k}": v for k, v in validation.items()}}
                best = max(best, validation["accuracy_most_certain"])
                shown = ", ".join(f"{k} {v:.4f}" for k, v in validation.items())
                (bar.write if progress else print)(f"step {step + 1}: validation {shown}")
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
            bar.set_postfix(loss=record["loss"], acc=record["train_accuracy"])
            if (step + 1) % run.checkpoint_every == 0 or done:
                checkpoint(step + 1, "ckpt.pt")
        bar.update(1)
    bar.close()

    if is_main:
        metrics["train_wall_s"] = round(time.time() - started, 1)
        metrics["processes"] = world
        # Reported only: nothing above (no step, no model choice) ever looked at the test split.
        test = evaluate(model, task.split(model_config, "test"), run.eval_batch_size)
        metrics.update({f"test_{k}": v for k, v in test.items()})
        checkpoint(run.steps, "ckpt.pt")
        metrics_file.close()
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ctm.train",
        description="Train a Continuous Thought Machine on a task (mnist, parity, maze).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--task", default="mnist", help="task to learn: mnist, parity or maze")
    parser.add_argument("--out", type=Path, help="folder for ckpt.pt and metrics.jsonl (default checkpoints/TASK)")
    parser.add_argument("--resume", type=Path, help="continue from this checkpoint (flags given here still apply)")
    parser.add_argument(
        "--init", type=Path, help="start a new run from this checkpoint's weights (its architecture; --set "
        "halting_hidden=N adds a halting head), with a fresh optimiser and schedule"
    )  # fmt: skip
    parser.add_argument("--steps", type=int, help="optimiser steps (overrides the task default)")
    parser.add_argument("--batch-size", type=int, help="batch size per process")
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--seed", type=int, help="seed for weights, batches and augmentation")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads per process (0: cores / processes)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a model (CTMConfig) or run (RunConfig) field, e.g. --set iterations=20; repeatable",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    task = get_task(args.task)
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // processes))

    if args.resume and args.init:
        parser.error("--resume continues a run and --init starts one: give one of them")
    overrides = parse_overrides(args.set)
    model_keys = set(CTMConfig.__dataclass_fields__)
    base_model = CTMConfig.from_dict(load_checkpoint(args.init)["model_args"]) if args.init else task.model
    model_config = base_model.replace(**{k: v for k, v in overrides.items() if k in model_keys})
    run_values: dict[str, Any] = {**task.run, "task": task.name}
    if args.resume:  # the checkpoint's run settings, changed only where this command says so
        payload = load_checkpoint(args.resume)
        run_values = dict(payload["run_config"])
        task = get_task(run_values["task"])
    run_values.update({k: v for k, v in overrides.items() if k not in model_keys})
    for flag in ("steps", "batch_size", "lr", "seed"):
        if getattr(args, flag) is not None:
            run_values[flag] = getattr(args, flag)
    run = RunConfig().replace(**run_values)
    out = args.out or REPO / "checkpoints" / task.name

    metrics = train(task, model_config, run, out, args.resume, progress=not args.no_progress, init=args.init)
    if metrics:
        print(json.dumps(metrics))


if __name__ == "__main__":
    main()
