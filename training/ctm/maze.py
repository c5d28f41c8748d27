"""Mazes generated in code: perfect mazes drawn as RGB pixels, and their routes as moves.

The picture is the reference implementation's maze data after its loader has read it: a maze of
n x n cells is (2n+1) x (2n+1) pixels, cell (r, c) at pixel (2r+1, 2c+1), the pixel between two
joined cells open, every other pixel wall.

    wall  black (0, 0, 0)    open  white (1, 1, 1)    start  red (1, 0, 0)    end  green (0, 1, 0)

(The reference's files also paint the route blue; its loader reads the route from the blue pixels and
then paints them white, so what its model sees is the picture above.)

The route is the reference's target: one move per PIXEL from start to end (so a step from one cell to
the next is two moves), up 0, down 1, left 2, right 3, then wait 4 up to the route length. Start and
end are chosen so that the whole route fits: the end is a cell at most `route_length // 2` cell steps
from the start along the maze.

A perfect maze is a spanning tree of the cell grid (exactly one route between any two cells), drawn
here by a randomised depth-first search. Everything is seeded: the same seed gives the same maze.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

UP, DOWN, LEFT, RIGHT, WAIT = range(5)
MOVES = ("up", "down", "left", "right", "wait")  # the reference's route encoding 0..4
STEP = {UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1)}  # (row, column) of each move
WALL, OPEN = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
START, END = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)


@dataclass(frozen=True)
class Maze:
    """One maze: its picture (H, W, 3) float32 in [0, 1], start and end pixels (row, column), the route."""

    pixels: np.ndarray
    start: tuple[int, int]
    end: tuple[int, int]
    route: np.ndarray  # (route_length,) int64 moves, padded with WAIT


def cells_for(side: int) -> int:
    """Cells per side of a (2n+1)-pixel maze picture."""
    if side < 5 or side % 2 == 0:
        raise ValueError(f"a maze picture's side must be odd and >= 5 (2 x cells + 1), got {side}")
    return (side - 1) // 2


def spanning_tree(cells: int, rng: np.random.Generator) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """A random spanning tree of the cells x cells grid (randomised depth-first search): cell -> neighbours."""
    joined: dict[tuple[int, int], list[tuple[int, int]]] = {(r, c): [] for r in range(cells) for c in range(cells)}
    start = (int(rng.integers(cells)), int(rng.integers(cells)))
    visited, stack = {start}, [start]
    while stack:
        r, c = stack[-1]
        options = [
            (r + dr, c + dc)
            for dr, dc in STEP.values()
            if 0 <= r + dr < cells and 0 <= c + dc < cells and (r + dr, c + dc) not in visited
        ]
        if not options:
            stack.pop()
            continue
        nxt = options[int(rng.integers(len(options)))]
        joined[(r, c)].append(nxt)
        joined[nxt].append((r, c))
        visited.add(nxt)
        stack.append(nxt)
    return joined


def generate_maze(side: int, route_length: int, rng: np.random.Generator) -> Maze:
    """A perfect maze of side x side pixels with a start and an end whose route fits `route_length` moves."""
    cells = cells_for(side)
    if route_length < 2:
        raise ValueError(f"route_length must be >= 2 (one cell step is two moves), got {route_length}")
    tree = spanning_tree(cells, rng)
    start = (int(rng.integers(cells)), int(rng.integers(cells)))
    parent = {start: start}
    depth = {start: 0}
    frontier = [start]
    while frontier:  # any order of visit gives the true depth in a tree: cell steps from the start
        cell = frontier.pop()
        for nxt in tree[cell]:
            if nxt not in parent:
                parent[nxt], depth[nxt] = cell, depth[cell] + 1
                frontier.append(nxt)
    reachable = sorted(cell for cell, d in depth.items() if 1 <= d <= route_length // 2)
    end = reachable[int(rng.integers(len(reachable)))]

    path = [end]
    while path[-1] != start:
        path.append(parent[path[-1]])
    path.reverse()
    route = np.full(route_length, WAIT, dtype=np.int64)
    moves = [_move_between(a, b) for a, b in zip(path, path[1:], strict=False)]
    route[: 2 * len(moves)] = np.repeat(moves, 2)

    pixels = np.empty((side, side, 3), dtype=np.float32)
    pixels[:] = WALL
    for (r, c), neighbours in tree.items():
        pixels[2 * r + 1, 2 * c + 1] = OPEN
        for nr, nc in neighbours:
            pixels[r + nr + 1, c + nc + 1] = OPEN  # the pixel between two joined cells
    start_px, end_px = (2 * start[0] + 1, 2 * start[1] + 1), (2 * end[0] + 1, 2 * end[1] + 1)
    pixels[start_px] = START
    pixels[end_px] = END
    return Maze(pixels, start_px, end_px, route)


def _move_between(a: tuple[int, int], b: tuple[int, int]) -> int:
    step = (b[0] - a[0], b[1] - a[1])
    return next(move for move, delta in STEP.items() if delta == step)


def walk(route: np.ndarray | list[int], start: tuple[int, int]) -> list[tuple[int, int]]:
    """The pixels a route visits from `start`, up to its first wait (the start included)."""
    at = [start]
    for move in route:
        if move == WAIT:
            break
        dr, dc = STEP[int(move)]
        at.append((at[-1][0] + dr, at[-1][1] + dc))
    return at


def find_colour(pixels: np.ndarray, colour: tuple[float, float, float]) -> tuple[int, int]:
    """(row, column) of the first pixel of exactly this colour."""
    hits = np.argwhere((pixels == np.asarray(colour, dtype=pixels.dtype)).all(-1))
    if not len(hits):
        raise ValueError(f"no pixel of colour {colour} in the maze")
    return int(hits[0][0]), int(hits[0][1])


def to_input(pixels: np.ndarray) -> Tensor:
    """(N, H, W, 3) pixels in [0, 1] -> the model's input (N, 3, H, W) in [-1, 1] (the reference's expand_range)."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2) * 2 - 1


def generate_mazes(count: int, side: int, route_length: int, seed: int) -> list[Maze]:
    """`count` mazes; maze i depends only on (seed, i), so a set can be extended without changing it."""
    return [generate_maze(side, route_length, np.random.default_rng([seed, i])) for i in range(count)]


SPLIT_SEEDS = {"validation": 1, "test": 2}
TRAIN_SEED = 3  # training mazes come from their own seed space, and are checked against the held-out ones
SPLIT_SIZE = 1000


@dataclass(frozen=True)
class MazeSet:
    mazes: list[Maze]
    inputs: Tensor  # (N, 3, H, W) in [-1, 1]
    targets: Tensor  # (N, route_length) moves


def maze_set(name: str, side: int, route_length: int, size: int = SPLIT_SIZE) -> MazeSet:
    """The fixed, seeded validation or test mazes."""
    if name not in SPLIT_SEEDS:
        raise ValueError(f"maze split must be one of {tuple(SPLIT_SEEDS)} (training draws fresh mazes), got {name!r}")
    mazes = generate_mazes(size, side, route_length, SPLIT_SEEDS[name])
    targets = torch.from_numpy(np.stack([m.route for m in mazes]))
    return MazeSet(mazes, to_input(np.stack([m.pixels for m in mazes])), targets)


def maze_batch(
    batch: int, side: int, route_length: int, generator: torch.Generator, held_out: frozenset[bytes]
) -> tuple[Tensor, Tensor]:
    """Fresh training mazes, never one of `held_out` (the validation and test pictures, as bytes)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    rng = np.random.default_rng([TRAIN_SEED, seed])
    mazes: list[Maze] = []
    while len(mazes) < batch:
        maze = generate_maze(side, route_length, rng)
        if maze.pixels.tobytes() not in held_out:
            mazes.append(maze)
    targets = torch.from_numpy(np.stack([m.route for m in mazes]))
    return to_input(np.stack([m.pixels for m in mazes])), targets
