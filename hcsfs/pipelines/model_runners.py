"""Loading and running ``model`` files: TorchScript through torch, ONNX through onnxruntime.

A unit's ``[Z, Y, X]`` stack goes to the model as float32 batches ``[N, 1, Y, X]`` (``batch`` planes at
a time); the model returns ``[N, C, Y, X]`` (``[N, Y, X]`` counts as C = 1). Each batch is reduced at
once to the map of one channel (float32) or the argmax over the channels (int32), so a model with many
output channels never holds them for the whole stack.

Loaded models are cached per file version (path, size, modification time) and device, a few at a time.
TorchScript runs on the stack's device (``torch.jit.load(map_location=...)``, inference mode). ONNX runs
with the CUDA execution provider on the stack's CUDA device when onnxruntime has it (``onnxruntime-gpu``),
else on the CPU; its batches pass through host memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hcsfs.memory import MemoryType
from hcsfs.pipelines.models import model_format

__all__ = ["MAX_LOADED", "clear_cache", "run_model"]

MAX_LOADED = 4
"""Models kept loaded (per file version and device)."""
_loaded: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every loaded model (frees their memory once no run uses them)."""
    with _lock:
        _loaded.clear()


def _cached(path: Path, device: str, load: Callable[[], Any]) -> Any:
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns, device)
    with _lock:  # loading is rare and quick next to running: one at a time keeps a model loaded once
        found = _loaded.get(key)
        if found is None:
            found = _loaded[key] = load()
            while len(_loaded) > MAX_LOADED:
                _loaded.popitem(last=False)
        _loaded.move_to_end(key)
        return found


def _torchscript(path: Path, device: Any) -> Any:
    import torch

    def load() -> Any:
        module = torch.jit.load(str(path), map_location=device)
        module.eval()
        return module

    return _cached(path, str(device), load)


class _OnnxModel:
    """An onnxruntime session with its one float32 input, and the batch size a fixed input fixes."""

    def __init__(self, path: Path, cuda_index: int | None) -> None:
        import onnxruntime as ort

        providers: list[Any] = ["CPUExecutionProvider"]
        if cuda_index is not None and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": cuda_index}))
        self.session = ort.InferenceSession(str(path), providers=providers)
        self.providers = self.session.get_providers()
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{path.name}: the model takes {len(inputs)} inputs; hcsfs gives one "
                             "(float32 planes [N, 1, Y, X])")
        self.input = inputs[0].name
        if inputs[0].type != "tensor(float)":
            raise ValueError(f"{path.name}: the model's input is {inputs[0].type}; hcsfs gives float32 "
                             "planes [N, 1, Y, X] (tensor(float))")
        shape = inputs[0].shape
        if len(shape) != 4:
            raise ValueError(f"{path.name}: the model's input has {len(shape)} dimensions, not 4 "
                             "([N, 1, Y, X])")
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        if self.fixed_batch is not None and n != self.fixed_batch:
            if n > self.fixed_batch:
                return np.concatenate([self(batch[i: i + self.fixed_batch])
                                       for i in range(0, n, self.fixed_batch)])
            pad = np.zeros((self.fixed_batch - n, *batch.shape[1:]), np.float32)
            return self(np.concatenate([batch, pad]))[:n]
        return np.asarray(self.session.run(None, {self.input: batch})[0])


def _onnx(path: Path, cuda_index: int | None) -> _OnnxModel:
    name = "cpu" if cuda_index is None else f"cuda:{cuda_index}"
    model: _OnnxModel = _cached(path, f"onnx:{name}", lambda: _OnnxModel(path, cuda_index))
    return model


def _select(result: Any, n: int, plane: tuple[int, int], output: str, channel: int | None,
            name: str) -> Any:
    """The model's ``[n, C, Y, X]`` result as ``[n, Y, X]``: one channel's map, or the argmax over C."""
    if isinstance(result, tuple | list) and result:
        result = result[0]
    shape = tuple(getattr(result, "shape", ()))
    if len(shape) == 3:
        result, shape = result[:, None], (shape[0], 1, *shape[1:])
    if len(shape) != 4 or shape[0] != n or tuple(shape[2:]) != plane:
        raise ValueError(f"{name}: the model returned {list(shape) or type(result).__name__} for planes "
                         f"[{n}, 1, {plane[0]}, {plane[1]}]; hcsfs needs [{n}, C, {plane[0]}, {plane[1]}]")
    channels = shape[1]
    if output == "argmax":
        if channels < 2:
            raise ValueError(f"{name}: argmax needs several output channels; the model returns 1 (use "
                             "output: map, then threshold)")
        return result.argmax(1)
    if channel is None:
        if channels != 1:
            raise ValueError(f"{name}: the model returns {channels} channels: say which with channel: "
                             f"(0-{channels - 1}), or use output: argmax")
        channel = 0
    if channel >= channels:
        raise ValueError(f"{name}: channel {channel} asked for; the model returns {channels} channels")
    return result[:, channel]


def _run_torch(path: Path, stack: Any, output: str, channel: int | None, batch: int) -> Any:
    import torch

    data = stack.to(torch.float32)
    device = data.device
    onnx = model_format(path.name) == "onnx"
    cuda = device.index if device.type == "cuda" else None
    runner = _onnx(path, cuda) if onnx else _torchscript(path, device)
    parts = []
    with torch.inference_mode():
        for start in range(0, data.shape[0], batch):
            x = data[start: start + batch, None].contiguous()
            if onnx:
                result: Any = torch.from_numpy(runner(x.cpu().numpy())).to(device)
            else:
                result = runner(x)
            part = _select(result, x.shape[0], tuple(x.shape[2:]), output, channel, path.name)
            parts.append(part.to(torch.int32) if output == "argmax" else part.to(torch.float32))
    return torch.cat(parts) if parts else torch.zeros(data.shape, dtype=torch.float32, device=device)


def _run_numpy(path: Path, stack: np.ndarray, output: str, channel: int | None, batch: int) -> np.ndarray:
    if model_format(path.name) != "onnx":  # TorchScript on the CPU
        import torch

        return np.asarray(_run_torch(path, torch.from_numpy(np.ascontiguousarray(stack)), output, channel,
                                     batch).numpy())
    data = stack.astype(np.float32, copy=False)
    runner = _onnx(path, None)
    parts = []
    for start in range(0, data.shape[0], batch):
        x = np.ascontiguousarray(data[start: start + batch, None])
        part = _select(runner(x), x.shape[0], x.shape[2:], output, channel, path.name)
        parts.append(part.astype(np.int32 if output == "argmax" else np.float32, copy=False))
    return np.concatenate(parts) if parts else np.zeros(data.shape, np.float32)


def run_model(path: Path, stack: Any, memory_type: MemoryType, *, output: str = "map",
              channel: int | None = None, batch: int = 8) -> Any:
    """``path``'s model over ``stack`` (``[Z, Y, X]``, a torch tensor or a numpy array)."""
    if memory_type is MemoryType.TORCH:
        return _run_torch(path, stack, output, channel, batch)
    return _run_numpy(path, stack, output, channel, batch)
