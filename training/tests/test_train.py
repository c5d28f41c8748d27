"""Real training runs: MNIST loss goes down, a 2-process gloo DDP run completes, resume is exact."""

import json
import os
import subprocess
import sys

import torch

from ctm.checkpoint import load_checkpoint, model_from_checkpoint
from ctm.config import RunConfig
from ctm.losses import dual_index_loss
from ctm.model import CTM
from ctm.tasks import get_task
from ctm.train import lr_at, main, train
from tests.conftest import small_config

TRAINING_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def validation_loss(model, split, count=256):
    model.eval()
    with torch.no_grad():
        logits, certainty = model(split.inputs[:count])
        loss, _, _ = dual_index_loss(logits, certainty, split.targets[:count], model.config.output_shape)
    return loss.item()


def test_short_mnist_run_lowers_the_loss(tmp_path):
    task = get_task("mnist")
    config = small_config(iterations=4)
    run = RunConfig(steps=40, batch_size=32, lr=1e-2, warmup_steps=3, eval_every=40, checkpoint_every=40, augment=False)
    validation = task.split(config, "validation")
    torch.manual_seed(run.seed)  # the same initial weights that `train` starts from
    before = validation_loss(CTM(config), validation)
    metrics = train(task, config, run, tmp_path, progress=False)
    after = validation_loss(model_from_checkpoint(load_checkpoint(tmp_path / "ckpt.pt")), validation)
    assert after < before - 0.15, (before, after)
    assert metrics["validation_accuracy_most_certain"] > 0.2  # ten classes: chance is 0.1
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 41))
    assert {"loss", "lr", "grad_norm", "train_accuracy"} <= set(records[0])


def test_resume_continues_exactly(tmp_path):
    common = ["--task", "parity", "--no-progress", "--set", "iterations=3", "--set", "d_model=32", "--set", "d_input=16",
              "--set", "synapse_depth=2", "--set", "warmup_steps=2", "--batch-size", "8"]  # fmt: skip
    main([*common, "--steps", "6", "--out", str(tmp_path / "straight")])
    main([*common, "--steps", "3", "--out", str(tmp_path / "split")])
    main([*common, "--steps", "6", "--out", str(tmp_path / "split"), "--resume", str(tmp_path / "split" / "ckpt.pt")])
    straight = load_checkpoint(tmp_path / "straight" / "ckpt.pt")
    resumed = load_checkpoint(tmp_path / "split" / "ckpt.pt")
    assert resumed["step"] == straight["step"] == 6
    for key, value in straight["model"].items():
        torch.testing.assert_close(resumed["model"][key], value, msg=key)


def test_lr_schedule_warms_up_then_decays():
    run = RunConfig(steps=100, warmup_steps=10, lr=1.0)
    assert lr_at(0, run) == 0.1 and lr_at(9, run) == 1.0
    assert lr_at(55, run) == 0.5
    assert lr_at(99, run) < 0.01


def test_two_process_gloo_ddp_run_completes(tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "ctm.train", "--task", "parity", "--steps", "4", "--batch-size", "8", "--threads", "1",
        "--set", "iterations=3", "--set", "d_model=32", "--set", "d_input=16", "--set", "warmup_steps=1",
        "--no-progress", "--out", str(tmp_path),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=TRAINING_DIR, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = load_checkpoint(tmp_path / "ckpt.pt")
    assert payload["step"] == 4 and payload["metrics"]["processes"] == 2
