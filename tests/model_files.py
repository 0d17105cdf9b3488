"""Tiny models with fixed weights, written as TorchScript (torch) and ONNX (onnx.helper) files, and
their scipy references: a correlation with a known kernel, and classes split at thresholds (argmax)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

KERNEL = (np.arange(25, dtype=np.float32).reshape(5, 5) - 7.0) / 50.0
"""Asymmetric, so a convolution (flipped) cannot pass for the correlation a Conv2d computes."""
CUTS = (1500.5, 2600.5)
"""Class boundaries of the 3-class models: class = (x > CUTS[0]) + (x > CUTS[1])."""


def need(module: str) -> None:
    """Skip without ``module`` here; in CI a missing dependency fails (make install installs it)."""
    if importlib.util.find_spec(module) is None:
        if IN_CI:
            pytest.fail(f"{module} is not installed (make install installs it)")
        pytest.skip(f"{module} is not installed")


def conv_reference(stack: np.ndarray, mode: str) -> np.ndarray:
    """What the conv models compute, per plane: ``mirror`` for torch's reflect padding, ``constant``
    for ONNX's zero padding."""
    data = stack.astype(np.float64)
    return np.stack([ndi.correlate(plane, KERNEL.astype(np.float64), mode=mode, cval=0.0) for plane in data])


def classes_reference(stack: np.ndarray) -> np.ndarray:
    return ((stack > CUTS[0]).astype(np.int32) + (stack > CUTS[1])).astype(np.int32)


def _class_weights() -> tuple[np.ndarray, np.ndarray]:
    """out_k = k * x - b_k: argmax is 0 up to CUTS[0], 1 up to CUTS[1], 2 above (ties: the lower)."""
    weight = np.array([0.0, 1.0, 2.0], np.float32).reshape(3, 1, 1, 1)
    bias = np.array([0.0, -CUTS[0], -CUTS[0] - CUTS[1]], np.float32)
    return weight, bias


# --- TorchScript -------------------------------------------------------------------------------


def torchscript_conv(path: Path) -> Path:
    import torch

    conv = torch.nn.Conv2d(1, 1, 5, padding=2, padding_mode="reflect", bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(KERNEL)[None, None])
    torch.jit.script(conv).save(str(path))
    return path


def torchscript_classes(path: Path) -> Path:
    import torch

    conv = torch.nn.Conv2d(1, 3, 1)
    weight, bias = _class_weights()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weight))
        conv.bias.copy_(torch.from_numpy(bias))
    torch.jit.trace(conv, torch.zeros(2, 1, 8, 8)).save(str(path))
    return path


def torchscript_module(path: Path, kind: str, value: float = 1.0) -> Path:
    """A scripted module: ``batch`` (each plane becomes its batch's size), ``three`` (channels x, 2x,
    3x), ``half`` (every other row and column), ``flat`` (``[N, Y, X]``: x + 1), ``add`` (x + value)."""
    import torch

    class Batch(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 0.0 + float(x.shape[0])

    class Three(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, x * 2.0, x * 3.0], 1)

    class Half(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :, ::2, ::2]

    class Flat(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, 0] + 1.0

    class Add(torch.nn.Module):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = value

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.value

    modules = {"batch": Batch, "three": Three, "half": Half, "flat": Flat}
    module = Add(value) if kind == "add" else modules[kind]()
    torch.jit.script(module).save(str(path))
    return path


# --- ONNX --------------------------------------------------------------------------------------


def _onnx_save(path: Path, node: object, initializers: list[object], channels: int,
               batch: int | str = "N") -> Path:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [node], "hcsfs-test",
        [helper.make_tensor_value_info("planes", TensorProto.FLOAT, [batch, 1, "H", "W"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, channels, "H", "W"])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by onnxruntime >= 1.14
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def onnx_conv(path: Path, batch: int | str = "N") -> Path:
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(KERNEL[None, None], "weight")
    node = helper.make_node("Conv", ["planes", "weight"], ["out"], pads=[2, 2, 2, 2])
    return _onnx_save(path, node, [weight], 1, batch)


def onnx_classes(path: Path) -> Path:
    from onnx import helper, numpy_helper

    weight, bias = _class_weights()
    node = helper.make_node("Conv", ["planes", "weight", "bias"], ["out"])
    return _onnx_save(path, node, [numpy_helper.from_array(weight, "weight"),
                                   numpy_helper.from_array(bias, "bias")], 3)


def for_hcsfs(net: object, mean: float, std: float) -> object:
    """docs/pipelines.md "Your own models": the wrapper that normalizes, pads to multiples of 16 and
    returns a sigmoid probability (kept here verbatim, so the tests prove the documented recipe)."""
    import torch
    import torch.nn.functional as F

    class ForHcsfs(torch.nn.Module):
        """The trained network as hcsfs runs it: raw planes in, nucleus probability out."""

        def __init__(self, net: torch.nn.Module, mean: float, std: float) -> None:
            super().__init__()
            self.net, self.mean, self.std = net.eval(), mean, std

        def forward(self, planes: torch.Tensor) -> torch.Tensor:  # [N, 1, Y, X] float32
            y, x = planes.shape[2], planes.shape[3]
            pad_y, pad_x = (16 - y % 16) % 16, (16 - x % 16) % 16  # 4 poolings: multiples of 16
            data = F.pad((planes - self.mean) / self.std, [0, pad_x, 0, pad_y], mode="reflect")
            return torch.sigmoid(self.net(data))[:, :, :y, :x]  # [N, 1, Y, X]

    return ForHcsfs(net, mean, std)  # type: ignore[arg-type]
