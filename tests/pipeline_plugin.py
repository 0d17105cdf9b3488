"""A plugin for the pipeline tests (mounted with ``plugins=("tests.pipeline_plugin",)``): a step slow
enough that a test sees a run's partial output before it is done."""

from __future__ import annotations

import time

import numpy as np

from hcsfs.pipelines.registry import FunctionDef, FunctionRegistry, Param


def slow_copy(stack: np.ndarray, seconds: float = 0.05) -> np.ndarray:
    time.sleep(seconds)
    return stack.copy()


def register(registry: FunctionRegistry) -> None:
    registry.register(FunctionDef(
        name="slow_copy", doc="sleep, then return the stack unchanged (tests only)",
        params=(Param("seconds", float, 0.05, low=0.0, high=5.0, doc="sleep per unit"),)))
    registry.implement("slow_copy", "numpy", slow_copy)
