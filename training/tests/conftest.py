import os

import pytest
import torch

from ctm.config import CTMConfig

torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED_MODEL = os.path.join(REPO_ROOT, "models", "mnist-ctm", "1")


def small_config(**overrides) -> CTMConfig:
    """A CTM small enough to build, train and export in a second or two."""
    base = CTMConfig(
        iterations=6,
        d_model=32,
        d_input=16,
        heads=2,
        n_synch_out=8,
        n_synch_action=8,
        memory_length=5,
        memory_hidden_dims=4,
    )
    return base.replace(**overrides)


@pytest.fixture(params=["first-last", "random", "random-pairing"])
def pairing(request) -> str:
    return request.param
