"""``func: model`` on the CPU: time per 1024x1024 plane of a small U-Net (TorchScript and ONNX) through
the registry's implementation, against calling torch / onnxruntime directly on the same batches.

The U-Net (2 levels, 16-32-64 channels, 2 output classes, 0.12 M parameters) stands for a nuclei
segmentation model; the ratio is hcsfs's overhead (float32 conversion, batching, argmax to int32).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

PLANE = (1024, 1024)
PLANES = 4
GOAL = "<= 1.1x the direct call"


def _unet() -> Any:
    import torch
    from torch import nn

    def block(a: int, b: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(b, b, 3, padding=1), nn.ReLU())

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down1, self.down2, self.bottom = block(1, 16), block(16, 32), block(32, 64)
            self.up2, self.dec2 = nn.ConvTranspose2d(64, 32, 2, stride=2), block(64, 32)
            self.up1, self.dec1 = nn.ConvTranspose2d(32, 16, 2, stride=2), block(32, 16)
            self.head = nn.Conv2d(16, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.down1(x)
            b = self.down2(nn.functional.max_pool2d(a, 2))
            c = self.bottom(nn.functional.max_pool2d(b, 2))
            d = self.dec2(torch.cat([self.up2(c), b], 1))
            return self.head(self.dec1(torch.cat([self.up1(d), a], 1)))

    torch.manual_seed(0)
    return UNet().eval()


def _timed(fn: Any) -> tuple[float, float]:
    """``(wall, CPU)`` seconds of one call: CPU time (all threads) is steadier on a loaded machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run(workdir: Path) -> list[dict[str, object]]:
    import onnxruntime as ort
    import torch

    from hcsfs.pipelines import default_registry
    from hcsfs.pipelines.models import use_models

    folder = Path(workdir) / "models"
    folder.mkdir(parents=True, exist_ok=True)
    net = _unet()
    scripted = torch.jit.script(net)
    scripted.save(str(folder / "unet.pt"))
    torch.onnx.export(net, (torch.zeros(1, 1, 64, 64),), str(folder / "unet.onnx"), dynamo=False,
                      input_names=["planes"], output_names=["out"],
                      dynamic_axes={"planes": {0: "n", 2: "y", 3: "x"}, "out": {0: "n", 2: "y", 3: "x"}})
    registry = default_registry()
    use_models(registry, folder)
    stack = np.random.default_rng(0).integers(100, 4000, (PLANES, *PLANE)).astype(np.uint16)
    x = torch.from_numpy(stack.astype(np.float32))[:, None]
    session = ort.InferenceSession(str(folder / "unet.onnx"), providers=["CPUExecutionProvider"])
    rows: list[dict[str, object]] = []
    cases = [("TorchScript", "unet.pt", "torch", lambda: scripted(x)),
             ("ONNX", "unet.onnx", "numpy", lambda: session.run(None, {"planes": x.numpy()}))]
    threads = torch.get_num_threads()
    for label, file, memory, direct in cases:
        impl = registry.implementation("model", memory)

        def through_hcsfs(impl: Any = impl, file: str = file) -> None:
            impl(stack, file=file, output="argmax", batch=PLANES)

        ours, theirs = [], []
        with torch.inference_mode():
            through_hcsfs()
            direct()
            for _ in range(3):  # interleaved, so load from elsewhere on the machine hits both alike
                ours.append(_timed(through_hcsfs))
                theirs.append(_timed(direct))
        (wall, cpu), (wall_direct, cpu_direct) = (tuple(min(t[i] for t in runs) / PLANES for i in (0, 1))
                                                  for runs in (ours, theirs))
        baseline = "torch" if memory == "torch" else "onnxruntime"
        detail = (f"hcsfs {wall * 1e3:.0f} ms per plane wall, {cpu * 1e3:.0f} ms CPU (argmax labels); "
                  f"direct {wall_direct * 1e3:.0f} ms wall, {cpu_direct * 1e3:.0f} ms CPU")
        rows.append({"case": f"model per {PLANE[0]}x{PLANE[1]} plane, {label} U-Net, CPU ({threads} threads)",
                     "baseline": f"{baseline} called directly (CPU time)",
                     "ratio": round(cpu / cpu_direct, 2), "goal": GOAL, "detail": detail})
    return rows


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for row in run(Path(tmp)):
            print(row)
