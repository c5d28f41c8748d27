"""Continuous Thought Machines for ctm-serve: model, training, per-tick ONNX export and calibration."""

from .config import CTMConfig, RunConfig
from .model import CTM, TickState

__all__ = ["CTM", "CTMConfig", "RunConfig", "TickState"]
