"""``func: model``: the owner's trained models (TorchScript or ONNX) from the mount's ``--models`` folder.

The folder is trusted: only the mount's owner names it (``hcsfs mount --models DIR``, ``hcsfs process
--models DIR``, :func:`use_models`), and loading a model runs it (TorchScript is code). A spec names a file
in that folder by its name only: :func:`model_path` refuses paths, ``..``, hidden names and unknown
suffixes, and the file must exist there. Loading and running are in :mod:`hcsfs.pipelines.model_runners`.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hcsfs.errors import HcsfsError, SpecError
from hcsfs.memory import MemoryType, memory_types
from hcsfs.pipelines.registry import REQUIRED, FunctionDef, FunctionRegistry, Param

__all__ = ["MODEL_SUFFIXES", "OUTPUTS", "model_definition", "model_format", "model_path", "register_models",
           "use_models"]

MODEL_SUFFIXES = {".pt": "torchscript", ".pth": "torchscript", ".ts": "torchscript",
                  ".torchscript": "torchscript", ".onnx": "onnx"}
"""File suffix -> format."""
OUTPUTS = ("map", "argmax")
_FORMAT_MODULE = {"torchscript": "torch", "onnx": "onnxruntime"}
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}")
MAX_CHANNEL = 1023
MAX_BATCH = 256


def model_format(name: str) -> str | None:
    """``torchscript`` or ``onnx`` by the file's suffix, ``None`` for another."""
    return MODEL_SUFFIXES.get(Path(name).suffix.lower())


def check_model_name(name: str, where: str) -> str:
    """``name`` if it is a plain model file name (no folder, no ``..``, a known suffix)."""
    if not _NAME_RE.fullmatch(name) or ".." in name:
        raise SpecError(where, f"{name[:80]!r} is not a model file name: 1-200 letters, digits, '_', '-', "
                               "'+', '.', starting with a letter or digit, no '/' or '..'")
    if model_format(name) is None:
        raise SpecError(where, f"{name!r}: a model file ends with {', '.join(MODEL_SUFFIXES)}")
    return name


def model_path(folder: Path | None, name: str, where: str) -> Path:
    """The file ``name`` of the models ``folder``, or :class:`SpecError` naming ``where``."""
    check_model_name(name, where)
    if folder is None:
        raise SpecError(where, "no models folder: the mount's owner gives one with --models DIR "
                               "(hcsfs mount, hcsfs process)")
    path = folder / name
    if not path.is_file():
        present = sorted(p.name for p in folder.iterdir() if model_format(p.name)) if folder.is_dir() else []
        shown = ", ".join(present[:10]) + (", ..." if len(present) > 10 else "") if present else "none"
        raise SpecError(where, f"{name!r} is not a file in the models folder (models there: {shown})")
    module = _FORMAT_MODULE[model_format(name) or ""]
    if importlib.util.find_spec(module) is None:
        raise SpecError(where, f"{name!r} needs {module}, which is not installed here "
                               "(pip install 'hcsfs[models]')")
    return path


def use_models(registry: FunctionRegistry, folder: str | os.PathLike[str] | None, *,
               must_exist: bool = True) -> None:
    """Let ``registry``'s ``model`` steps read the files of ``folder`` (``None``: no folder).

    The path is made absolute (Dask workers get the same path: it must be on a shared filesystem).
    """
    if folder is None:
        registry.models_dir = None
        return
    path = Path(folder).expanduser().absolute()
    if must_exist and not path.is_dir():
        raise HcsfsError(f"models folder {folder}: not a folder")
    registry.models_dir = path


def _kind(args: Mapping[str, Any]) -> str:
    return "labels" if args.get("output") == "argmax" else "image"


def model_definition(registry: FunctionRegistry) -> FunctionDef:
    """The ``model`` function of ``registry`` (its file check reads the registry's models folder)."""

    def check(args: dict[str, Any], where: str) -> None:
        model_path(registry.models_dir, args["file"], f"{where}.file")
        if args.get("output") == "argmax" and args.get("channel") is not None:
            raise SpecError(f"{where}.channel", "argmax reads every output channel: leave channel out")

    return FunctionDef(
        "model", "run a trained model of the mount's `--models` folder on each plane (TorchScript through "
        "torch on the unit's device, ONNX through onnxruntime; planes go in as float32 `[N, 1, Y, X]` "
        "batches, the model returns `[N, C, Y, X]`): its map (C = 1, or the `channel` asked for), or "
        "labels (`output: argmax`: the index of each pixel's largest channel)",
        (Param("file", str, REQUIRED, doc="a file of the models folder: .pt, .pth, .ts, .torchscript "
                                          "(TorchScript) or .onnx"),
         Param("output", str, "map", choices=OUTPUTS, doc="map: float32 values; argmax: int32 class labels"),
         Param("channel", int, None, 0, MAX_CHANNEL, doc="the output channel of a map (models of C > 1)"),
         Param("batch", int, 8, 1, MAX_BATCH, doc="planes per model call")),
        output="float32 map, or int32 labels (`output: argmax`)", check=check, kind_of=_kind,
        prefer=(MemoryType.TORCH,))


def register_models(registry: FunctionRegistry) -> None:
    """Register ``model`` with its torch (TorchScript and ONNX, on the unit's device) and numpy (CPU)
    implementations; each checks the file again when it runs (the folder may have changed)."""
    registry.register(model_definition(registry))

    def run(memory_type: MemoryType) -> Any:
        def model(stack: Any, file: str, output: str = "map", channel: int | None = None,
                  batch: int = 8) -> Any:
            from hcsfs.pipelines import model_runners

            path = model_path(registry.models_dir, file, "file")
            return model_runners.run_model(path, stack, memory_type, output=output, channel=channel,
                                           batch=batch)

        model.__name__ = model.__qualname__ = f"model[{memory_type.value}]"
        return memory_types(memory_type, oom_recovery="split")(model)

    for memory_type in (MemoryType.NUMPY, MemoryType.TORCH):
        registry.implement("model", memory_type, run(memory_type))
