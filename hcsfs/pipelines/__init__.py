"""Pipelines: spec parsing and validation, the function registry and built-ins, the runner, outputs.

The FUSE layer talks to :class:`PipelineManager` only; see docs/pipelines.md.
"""

from __future__ import annotations

from hcsfs.errors import SpecError, UnknownFunctionError
from hcsfs.pipelines.manager import PipelineManager
from hcsfs.pipelines.outputs import OutputPlate, RunOutput
from hcsfs.pipelines.registry import (
    FunctionDef,
    FunctionRegistry,
    Param,
    TableDef,
    default_registry,
    function_table_markdown,
    load_plugin,
    load_plugins,
)
from hcsfs.pipelines.spec import PipelineSpec, Selection, StepSpec, parse_spec

__all__ = [
    "FunctionDef",
    "FunctionRegistry",
    "OutputPlate",
    "Param",
    "PipelineManager",
    "PipelineSpec",
    "RunOutput",
    "Selection",
    "SpecError",
    "StepSpec",
    "TableDef",
    "UnknownFunctionError",
    "default_registry",
    "function_table_markdown",
    "load_plugin",
    "load_plugins",
    "parse_spec",
]
