"""Load a checkpoint written by the reference implementation's training scripts without running its code.

Those scripts `torch.save` a full pickle: the weights, optimiser/scheduler/scaler state, the argparse
`Namespace` of the run, loss and accuracy histories (numpy scalars and arrays) and the torch, numpy and
Python RNG states. A pickle can name any Python callable and call it while loading, which is how a
malicious file runs code. So we load with `torch.load(weights_only=True)`, which refuses every global
except tensors and plain containers, and allow exactly the few extra globals those files need:

    argparse.Namespace                           the run's arguments (`args`)
    numpy.ndarray, numpy.dtype,                  arrays: per-tick accuracy histories, the numpy RNG state
    numpy[._]core.multiarray._reconstruct
    numpy[._]core.multiarray.scalar              numpy scalars in the histories

Before unpickling anything, the file's pickle is scanned (without executing it) for the globals it
names; any other is refused with a message naming it. `unsafe=True` loads with `weights_only=False`
instead, which RUNS WHATEVER CODE THE FILE CARRIES: only for files you trust (`--unsafe-pickle`).
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

_reconstruct = np._core.multiarray._reconstruct
_scalar = np._core.multiarray.scalar

# (object, the name a pickle refers to it by): numpy 1.x wrote `numpy.core.*`, numpy 2 writes `numpy._core.*`.
ALLOWED_GLOBALS: tuple[tuple[Any, str], ...] = (
    (argparse.Namespace, "argparse.Namespace"),
    (np.ndarray, "numpy.ndarray"),
    (np.dtype, "numpy.dtype"),
    (_reconstruct, "numpy._core.multiarray._reconstruct"),
    (_reconstruct, "numpy.core.multiarray._reconstruct"),
    (_scalar, "numpy._core.multiarray.scalar"),
    (_scalar, "numpy.core.multiarray.scalar"),
)
ALLOWED_NAMES = frozenset(name for _, name in ALLOWED_GLOBALS)
# Unpickling a numpy dtype restores its state on an instance of its concrete class; the pickle never
# names these classes, but the loader must be allowed to build them. Plain numeric and bool dtypes only.
DTYPE_CLASSES = tuple(
    getattr(np.dtypes, f"{kind}DType")
    for kind in ("Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64")
    + ("Float16", "Float32", "Float64", "LongDouble", "Complex64", "Complex128")
)


class UnsafeCheckpointError(ValueError):
    """The file names a global outside the allow-list; the message names it."""


def globals_outside_allow_list(path: str | Path) -> list[str]:
    """Globals the file's pickle names that neither torch's weights-only loader nor our list allows.

    Reads the pickle's opcodes without executing any of them.
    """
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except (RuntimeError, ValueError, pickle.UnpicklingError, OSError) as error:
        raise UnsafeCheckpointError(f"{path}: not a torch.save zip file ({error})") from error
    return sorted(set(names) - ALLOWED_NAMES)


def load_reference_file(path: str | Path, unsafe: bool = False) -> Any:
    """The unpickled contents of `path`, loaded weights-only with the allow-list (see the module docstring)."""
    if unsafe:
        return torch.load(path, map_location="cpu", weights_only=False)
    refused = globals_outside_allow_list(path)
    if refused:
        raise UnsafeCheckpointError(
            f"{path}: refusing to load: its pickle names {', '.join(refused)}, which is not on the allow-list "
            f"({', '.join(sorted(ALLOWED_NAMES))}); loading it could run code. If you trust the file and "
            "its source, pass --unsafe-pickle (loads it with weights_only=False)"
        )
    with torch.serialization.safe_globals([*ALLOWED_GLOBALS, *DTYPE_CLASSES]):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:  # a construct the scan cannot see; still refused, never run
            lines = [line for line in str(error).splitlines() if "WeightsUnpickler error" in line]
            reason = lines[0] if lines else str(error).splitlines()[0]
            raise UnsafeCheckpointError(
                f"{path}: refusing to load: {reason}. If you trust the file, pass --unsafe-pickle"
            ) from error
