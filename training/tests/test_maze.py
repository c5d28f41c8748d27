"""The maze task: perfect mazes, the reference's route encoding, a training step, export parity."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ctm.checkpoint import load_checkpoint, model_from_checkpoint
from ctm.export import export_model
from ctm.losses import maze_route_loss
from ctm.manifest import validate_manifest
from ctm.maze import (
    END,
    MOVES,
    OPEN,
    START,
    WAIT,
    WALL,
    find_colour,
    generate_maze,
    generate_mazes,
    spanning_tree,
    walk,
)
from ctm.model import CTM
from ctm.onnx_runner import OnnxCTM
from ctm.reference import family_task
from ctm.tasks import get_task
from ctm.train import train
from tests.conftest import REPO_ROOT
from tests.test_export import assert_parity

SIDE, ROUTE = 15, 20
TINY_SIDE, TINY_ROUTE = 11, 8


def tiny_maze_config(**overrides):
    """The maze family (ResNet, first-last, [route, 5] output) on 5 x 5-cell mazes, small enough to train fast."""
    base = get_task("maze").model.replace(
        iterations=3, d_model=32, d_input=16, heads=2, n_synch_out=8, n_synch_action=8, memory_length=4,
        input_shape=(3, TINY_SIDE, TINY_SIDE), output_shape=(TINY_ROUTE, 5),
    )  # fmt: skip
    return base.replace(**overrides)


@pytest.fixture
def few_held_out(monkeypatch):
    """64 validation and 64 test mazes instead of 1,000: evaluation and calibration in a fraction of a second."""
    import ctm.tasks

    monkeypatch.setattr(ctm.tasks, "MAZE_HELD_OUT", 64)


# ---------------------------------------------------------------- generation


@pytest.mark.parametrize("cells", [2, 5, 7])
def test_maze_is_a_spanning_tree_of_the_cells(cells):
    tree = spanning_tree(cells, np.random.default_rng(cells))
    edges = {frozenset((a, b)) for a, neighbours in tree.items() for b in neighbours}
    assert len(tree) == cells * cells and len(edges) == cells * cells - 1  # a tree has n - 1 edges...
    seen, todo = set(), [(0, 0)]
    while todo:  # ...and is connected
        cell = todo.pop()
        if cell not in seen:
            seen.add(cell)
            todo += tree[cell]
    assert len(seen) == cells * cells
    for a, b in map(tuple, edges):
        assert abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1  # only grid neighbours are joined


def test_picture_is_the_tree_with_its_colours():
    maze = generate_maze(SIDE, ROUTE, np.random.default_rng(7))
    pixels = maze.pixels
    assert pixels.shape == (SIDE, SIDE, 3) and pixels.dtype == np.float32
    colours = {tuple(p) for p in pixels.reshape(-1, 3)}
    assert colours == {WALL, OPEN, START, END}
    assert find_colour(pixels, START) == maze.start and find_colour(pixels, END) == maze.end
    assert (pixels == np.asarray(START)).all(-1).sum() == 1 and (pixels == np.asarray(END)).all(-1).sum() == 1
    # The border and every pixel with two even coordinates are wall; every cell is open.
    assert (pixels[0] == 0).all() and (pixels[-1] == 0).all() and (pixels[:, 0] == 0).all()
    assert (pixels[::2, ::2] == 0).all() and (pixels[1::2, 1::2].max(-1) > 0).all()
    # A perfect maze of n x n cells has n^2 cells and n^2 - 1 openings between them.
    cells = (SIDE - 1) // 2
    assert (pixels.max(-1) > 0).sum() == cells * cells + cells * cells - 1


def test_generation_is_deterministic_per_seed():
    a = generate_mazes(5, SIDE, ROUTE, seed=11)
    b = generate_mazes(5, SIDE, ROUTE, seed=11)
    c = generate_mazes(5, SIDE, ROUTE, seed=12)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.pixels, y.pixels)
        np.testing.assert_array_equal(x.route, y.route)
    assert any(not np.array_equal(x.pixels, z.pixels) for x, z in zip(a, c, strict=True))
    assert len({m.pixels.tobytes() for m in a}) == 5


def test_validation_and_test_are_fixed_and_never_drawn_for_training():
    task, config = get_task("maze"), get_task("maze").model
    validation, test = task.split(config, "validation"), task.split(config, "test")
    assert len(validation) == len(test) == 1000
    held = {bytes(x.numpy().tobytes()) for x in torch.cat([validation.inputs, test.inputs])}
    assert len(held) == 2000  # no maze in both
    x, y = task.train_batch(config, task.split(config, "train"), 64, torch.Generator().manual_seed(0), False)
    assert x.shape == (64, 3, SIDE, SIDE) and y.shape == (64, ROUTE)
    assert not {bytes(row.numpy().tobytes()) for row in x} & held


def test_training_batches_skip_held_out_mazes():
    """A held-out picture drawn for training is replaced: the check that makes the split hold."""
    from ctm.maze import maze_batch

    generator = torch.Generator().manual_seed(3)
    x, _ = maze_batch(8, SIDE, ROUTE, generator, frozenset())
    forbidden = frozenset({((x[0].permute(1, 2, 0).numpy() + 1) / 2).astype(np.float32).tobytes()})
    again, _ = maze_batch(8, SIDE, ROUTE, torch.Generator().manual_seed(3), forbidden)
    assert not torch.equal(again[0], x[0]) and torch.equal(again[:7], x[1:8])


# ---------------------------------------------------------------- route encoding


def reference_route(pixels: np.ndarray, route_path: list[tuple[int, int]], length: int) -> list[int]:
    """The route as the reference's loader reads it from its files: the route painted blue, then from the
    red pixel the first blue-or-green neighbour in the order up, down, left, right, marking visited
    pixels white, until the green pixel; padded with wait (4)."""
    blue, green = np.array([0, 0, 1.0]), np.array([0, 1.0, 0])
    x = pixels.copy()
    for cell in route_path[1:-1]:
        x[cell] = blue
    at, end, moves = route_path[0], route_path[-1], []
    while at != end and len(moves) < length:
        nexts = [
            (move, (at[0] + dr, at[1] + dc))
            for move, (dr, dc) in enumerate([(-1, 0), (1, 0), (0, -1), (0, 1)])
            if 0 <= at[0] + dr < x.shape[0] and 0 <= at[1] + dc < x.shape[1]
        ]
        move, nxt = next((m, p) for m, p in nexts if (x[p] == blue).all() or (x[p] == green).all())
        moves.append(move)
        x[at] = 1.0
        at = nxt
    return moves + [4] * (length - len(moves))


@pytest.mark.parametrize("seed", range(20))
def test_route_walks_from_start_to_end_through_open_pixels(seed):
    maze = generate_maze(SIDE, ROUTE, np.random.default_rng(seed))
    visited = walk(maze.route, maze.start)
    assert visited[0] == maze.start and visited[-1] == maze.end
    assert all(maze.pixels[p].max() > 0 for p in visited)  # never through a wall
    assert len(set(visited)) == len(visited)  # a perfect maze's route never revisits a pixel
    moves = int((maze.route != WAIT).sum())
    assert moves % 2 == 0 and 2 <= moves <= ROUTE  # two pixel moves per cell step, and it fits
    assert (maze.route[:moves] != WAIT).all() and (maze.route[moves:] == WAIT).all()  # padded with wait
    assert maze.route.tolist() == reference_route(maze.pixels, visited, ROUTE)


def test_route_labels_are_the_references():
    assert MOVES == ("up", "down", "left", "right", "wait")
    maze = generate_maze(11, 8, np.random.default_rng(0))
    assert maze.route.shape == (8,) and maze.route.dtype == np.int64


# ---------------------------------------------------------------- manifest, loss, training, export


def test_manifest_input_is_the_reference_importers():
    config = get_task("maze").model
    reference = family_task("mazes-small", config, {"expand_range": True}, None)
    assert get_task("maze").input_spec(config) == reference.input_spec(config)
    assert get_task("maze").labels == reference.labels == MOVES
    inputs = get_task("maze").split(config, "test").inputs
    assert inputs.min() == -1 and inputs.max() == 1  # pixels * 2 - 1, the reference's expand_range


def test_route_loss_curriculum_counts_positions_up_to_the_lookahead_past_the_right_prefix():
    """The reference's auto-curriculum: with the first 3 moves right, positions up to 3 - 1 + lookahead count."""
    targets = torch.tensor([[0, 0, 3, 3, 4, 4]])
    predicted = torch.tensor([0, 0, 3, 1, 1, 1])  # right at 0..2, wrong at 3..5
    logits = torch.nn.functional.one_hot(predicted, 5).float().mul(4).reshape(1, 30, 1).expand(1, 30, 2).clone()
    certainty = torch.zeros(1, 2)
    per_position = torch.nn.functional.cross_entropy(logits[0, :, 0].view(6, 5), targets[0], reduction="none")
    for lookahead, counted in ((1, 3), (2, 4), (3, 5), (10, 6)):
        loss, _, _ = maze_route_loss(logits, certainty, targets, (6, 5), lookahead=lookahead)
        torch.testing.assert_close(loss, per_position[:counted].mean(), msg=f"lookahead {lookahead}")


def test_training_steps_fit_a_batch_of_mazes():
    """Optimiser steps with the route loss fit a fixed batch of mazes."""
    task, config = get_task("maze"), tiny_maze_config()
    torch.manual_seed(0)
    model = CTM(config)
    x, y = task.train_batch(config, task.split(config, "train"), 8, torch.Generator().manual_seed(1), False)
    assert x.shape == (8, 3, TINY_SIDE, TINY_SIDE) and y.shape == (8, TINY_ROUTE)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        logits, certainty = model(x)
        loss, _, _ = task.loss(logits, certainty, y, config.output_shape)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        model.clamp_decay_()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses  # measured: 1.59 -> 1.38


def test_train_runs_the_maze_task_and_reports_solved_mazes(tmp_path, few_held_out):
    from ctm.config import RunConfig

    task, config = get_task("maze"), tiny_maze_config()
    run = RunConfig(task="maze", steps=3, batch_size=8, warmup_steps=1, eval_every=3, eval_batch_size=500,
                    checkpoint_every=3, augment=False)  # fmt: skip
    metrics = train(task, config, run, tmp_path, progress=False)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
    for split in ("validation", "test"):
        solved, moves = metrics[f"{split}_solved_most_certain"], metrics[f"{split}_accuracy_most_certain"]
        assert 0.0 <= solved <= moves <= 1.0


def test_maze_export_matches_pytorch_per_tick(tmp_path, few_held_out):
    task = get_task("maze")
    model = CTM(tiny_maze_config())
    manifest = export_model(model, task, tmp_path, "maze-tiny", 1, source={"format": "test"}, samples=3)
    assert manifest["output"]["shape"] == [TINY_ROUTE, 5] and manifest["output"]["labels"] == list(MOVES)
    assert manifest["input"]["image"]["preprocess"] == "resize"
    assert manifest["input"]["shape"] == [3, TINY_SIDE, TINY_SIDE]
    assert_parity(model, tmp_path, batch_sizes=(1, 3))
    samples = json.loads((tmp_path / "samples" / "labels.json").read_text())
    assert len(samples) == 3 and len(samples[0]["label"]) == TINY_ROUTE
    from PIL import Image

    picture = np.asarray(Image.open(tmp_path / "samples" / samples[0]["file"]))
    assert picture.shape == (TINY_SIDE, TINY_SIDE, 3)
    test = task.split(model.config, "test")
    np.testing.assert_array_equal(
        picture / 255.0 * 2 - 1, test.inputs[samples[0]["split_index"]].permute(1, 2, 0).numpy()
    )
    assert samples[0]["label"] == test.targets[samples[0]["split_index"]].tolist()


SHIPPED_MAZE = Path(REPO_ROOT) / "models" / "maze-ctm" / "1"


@pytest.mark.skipif(not (SHIPPED_MAZE / "manifest.json").exists(), reason="no shipped maze model")
def test_shipped_maze_model_matches_its_checkpoint_and_golden():
    manifest = json.loads((SHIPPED_MAZE / "manifest.json").read_text())
    validate_manifest(manifest, SHIPPED_MAZE)
    assert manifest["task"] == "maze" and manifest["output"]["labels"] == list(MOVES)
    model = model_from_checkpoint(load_checkpoint(SHIPPED_MAZE / "checkpoint.pt"))
    assert_parity(model, SHIPPED_MAZE, batch_sizes=(1, 4))
    runner = OnnxCTM(SHIPPED_MAZE)
    for case in json.loads((SHIPPED_MAZE / "golden.json").read_text())["cases"]:
        x = np.asarray(case["input"], dtype=np.float32).reshape(1, *case["input_shape"])
        np.testing.assert_allclose(runner.run(x)["logits"][0], case["logits"], atol=1e-4, rtol=0)
