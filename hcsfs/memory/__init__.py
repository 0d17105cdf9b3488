"""Memory types: detection, conversion, decorators, 3-D stacking, GPU cleanup and OOM recovery.

Importing this package imports no array framework except numpy; see docs/memory.md.
"""

from __future__ import annotations

from hcsfs.memory.convert import CONVERSION_TABLE as CONVERSION_TABLE
from hcsfs.memory.convert import convert as convert
from hcsfs.memory.decorators import MemorySpec as MemorySpec
from hcsfs.memory.decorators import cupy as cupy
from hcsfs.memory.decorators import jax as jax
from hcsfs.memory.decorators import memory_spec as memory_spec
from hcsfs.memory.decorators import memory_types as memory_types
from hcsfs.memory.decorators import numpy as numpy
from hcsfs.memory.decorators import pyclesperanto as pyclesperanto
from hcsfs.memory.decorators import pyclesperanto_prototype as pyclesperanto_prototype
from hcsfs.memory.decorators import tensorflow as tensorflow
from hcsfs.memory.decorators import torch as torch
from hcsfs.memory.devices import Device as Device
from hcsfs.memory.devices import device_of as device_of
from hcsfs.memory.errors import DimensionalityError as DimensionalityError
from hcsfs.memory.errors import FrameworkUnavailableError as FrameworkUnavailableError
from hcsfs.memory.errors import MemoryConversionError as MemoryConversionError
from hcsfs.memory.errors import OutOfMemoryRecoveryError as OutOfMemoryRecoveryError
from hcsfs.memory.frameworks import import_framework as import_framework
from hcsfs.memory.frameworks import load_frameworks as load_frameworks
from hcsfs.memory.gpu import CleanupReport as CleanupReport
from hcsfs.memory.gpu import cleanup_gpu_memory as cleanup_gpu_memory
from hcsfs.memory.gpu import device_slot as device_slot
from hcsfs.memory.gpu import is_out_of_memory as is_out_of_memory
from hcsfs.memory.gpu import set_device_concurrency as set_device_concurrency
from hcsfs.memory.oom import Execution as Execution
from hcsfs.memory.oom import current_execution as current_execution
from hcsfs.memory.oom import run_with_recovery as run_with_recovery
from hcsfs.memory.stacking import stack_slices as stack_slices
from hcsfs.memory.stacking import unstack_slices as unstack_slices
from hcsfs.memory.stats import ConversionMethod as ConversionMethod
from hcsfs.memory.stats import MemoryStats as MemoryStats
from hcsfs.memory.stats import OomEvent as OomEvent
from hcsfs.memory.stats import reset_stats as reset_stats
from hcsfs.memory.stats import stats as stats
from hcsfs.memory.types import MemoryType as MemoryType
from hcsfs.memory.types import detect_memory_type as detect_memory_type

__all__ = [
    "CONVERSION_TABLE",
    "CleanupReport",
    "ConversionMethod",
    "Device",
    "DimensionalityError",
    "Execution",
    "FrameworkUnavailableError",
    "MemoryConversionError",
    "MemorySpec",
    "MemoryStats",
    "MemoryType",
    "OomEvent",
    "OutOfMemoryRecoveryError",
    "cleanup_gpu_memory",
    "convert",
    "cupy",
    "current_execution",
    "detect_memory_type",
    "device_of",
    "device_slot",
    "import_framework",
    "is_out_of_memory",
    "jax",
    "load_frameworks",
    "memory_spec",
    "memory_types",
    "numpy",
    "pyclesperanto",
    "pyclesperanto_prototype",
    "reset_stats",
    "run_with_recovery",
    "set_device_concurrency",
    "stack_slices",
    "stats",
    "tensorflow",
    "torch",
    "unstack_slices",
]
