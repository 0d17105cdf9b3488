"""``func: model`` (TorchScript and ONNX files of the --models folder) and the fixed ``threshold``:
names checked, outputs equal to scipy on fixed-weight models, batching, argmax labels, run errors."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from hcsfs import memory as hm
from hcsfs.errors import HcsfsError, SpecError
from hcsfs.memory import MemoryType
from hcsfs.pipelines import FunctionRegistry, default_registry, model_runners
from hcsfs.pipelines.models import model_path, use_models
from hcsfs.pipelines.registry import framework_installed
from hcsfs.pipelines.spec import parse_spec
from hcsfs.pipelines.threshold import IMPLEMENTATIONS, integer_cut
from tests.model_files import (
    classes_reference,
    conv_reference,
    for_hcsfs,
    need,
    onnx_classes,
    onnx_conv,
    torchscript_classes,
    torchscript_conv,
    torchscript_module,
)
from tests.pipelines.conftest import blobs, make_plate, wait_state

RNG = np.random.default_rng(7)
STACK = np.stack([blobs(RNG, (40, 48)) for _ in range(5)])  # uint16 [5, 40, 48]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("torch")
    need("onnx")
    folder = tmp_path_factory.mktemp("models")
    torchscript_conv(folder / "conv.pt")
    torchscript_classes(folder / "classes.ts")
    onnx_conv(folder / "conv.onnx")
    onnx_conv(folder / "conv1.onnx", batch=1)
    onnx_conv(folder / "conv3.onnx", batch=3)
    onnx_classes(folder / "classes.onnx")
    torchscript_module(folder / "batch.pt", "batch")
    torchscript_module(folder / "three.pt", "three")
    torchscript_module(folder / "half.pt", "half")
    torchscript_module(folder / "flat.pt", "flat")
    (folder / "notes.txt").write_text("not a model")
    return folder


@pytest.fixture(scope="module")
def reg(models: Path) -> FunctionRegistry:
    registry = default_registry()
    use_models(registry, models)
    return registry


def _spec(step: str, registry: FunctionRegistry) -> object:
    return parse_spec("m.yaml", f"steps:\n  - {step}\n".encode(), registry)


def _run(registry: FunctionRegistry, memory: str, stack: np.ndarray = STACK, **args: object) -> np.ndarray:
    out = registry.implementation("model", memory)(stack.copy(), **args)
    return np.asarray(hm.convert(out, MemoryType.NUMPY))


# --- the spec ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../conv.pt", "sub/conv.pt", "/etc/passwd", ".conv.pt", "conv.pt/",
                                  "..pt", "conv.pkl", "conv", "", "a\x00.pt", "notes.txt", "x" * 300 + ".pt"])
def test_model_names_are_plain_files_of_known_kinds(reg: FunctionRegistry, name: str) -> None:
    with pytest.raises(SpecError) as caught:
        _spec(json.dumps({"func": "model", "args": {"file": name}}), reg)
    assert caught.value.field == "steps[0].args.file", caught.value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=40) | st.sampled_from(["..", "../conv.pt", "conv.pt", "./conv.pt", "conv.pt\n",
                                                    "CONV.PT", "conv.pt ", "~/conv.pt", "conv.onnx"]))
def test_any_accepted_name_is_a_file_of_the_folder(reg: FunctionRegistry, models: Path, name: str) -> None:
    try:
        path = model_path(models, name, "file")
    except SpecError as exc:
        assert exc.field == "file"
        return
    assert path.parent == models and path.is_file() and name in {p.name for p in models.iterdir()}


def test_model_file_must_exist_in_the_folder(reg: FunctionRegistry) -> None:
    with pytest.raises(SpecError, match=r"'unet\.pt' is not a file in the models folder \(models there: "
                                        r"batch\.pt, classes\.onnx"):
        _spec("{func: model, args: {file: unet.pt}}", reg)


def test_without_a_models_folder_the_spec_says_how_to_give_one(registry: FunctionRegistry) -> None:
    assert registry.models_dir is None
    with pytest.raises(SpecError, match="--models DIR") as caught:
        _spec("{func: model, args: {file: conv.pt}}", registry)
    assert caught.value.field == "steps[0].args.file"


def test_use_models_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(HcsfsError, match="not a folder"):
        use_models(default_registry(), tmp_path / "nope")
    registry = default_registry()
    use_models(registry, tmp_path / "nope", must_exist=False)  # Dask workers: checked when a step runs
    assert registry.models_dir == tmp_path / "nope"


def test_argument_rules(reg: FunctionRegistry) -> None:
    with pytest.raises(SpecError) as caught:
        _spec("{func: model, args: {file: classes.ts, output: argmax, channel: 1}}", reg)
    assert caught.value.field == "steps[0].args.channel"
    with pytest.raises(SpecError) as caught:
        _spec("{func: model, args: {file: conv.pt, output: softmax}}", reg)
    assert caught.value.field == "steps[0].args.output"
    with pytest.raises(SpecError) as caught:
        _spec("{func: model, args: {file: conv.pt, batch: 0}}", reg)
    assert caught.value.field == "steps[0].args.batch"
    with pytest.raises(SpecError) as caught:
        _spec("{func: model}", reg)
    assert caught.value.field == "steps[0].args.file"


def test_default_memory_is_torch_numpy_on_request(reg: FunctionRegistry) -> None:
    spec = _spec("{func: model, args: {file: conv.onnx}}", reg)
    assert spec.steps[0].memory is MemoryType.TORCH  # type: ignore[attr-defined]
    spec = _spec("{func: model, memory: numpy, args: {file: conv.onnx}}", reg)
    assert spec.steps[0].memory is MemoryType.NUMPY  # type: ignore[attr-defined]
    assert reg.memory_types("model")[0] is MemoryType.NUMPY  # the registry's order is unchanged


def test_result_kinds_follow_output(reg: FunctionRegistry) -> None:
    base = ("channels: {DAPI: 1}\nsteps:\n"
            "  - {func: model, input: DAPI, args: {file: classes.onnx%s}, as: seg}\n")
    measure = "  - {measure: [shape], objects: seg}\n"
    parse_spec("a.yaml", (base % ", output: argmax" + measure).encode(), reg)  # labels: measurable
    with pytest.raises(SpecError, match="'seg' is an image result"):
        parse_spec("a.yaml", (base % ", channel: 2" + measure).encode(), reg)


# --- running -----------------------------------------------------------------------------------


def _close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.ptp(want)))


@pytest.mark.parametrize("memory", ["torch", "numpy"])
@pytest.mark.parametrize("file", ["conv.pt", "conv.onnx", "conv1.onnx", "conv3.onnx"])
def test_conv_models_equal_scipy(reg: FunctionRegistry, memory: str, file: str) -> None:
    need("onnxruntime")
    mode = "mirror" if file.endswith(".pt") else "constant"  # torch reflect padding; ONNX zero padding
    _close(_run(reg, memory, file=file, batch=2), conv_reference(STACK, mode))


@pytest.mark.parametrize("memory", ["torch", "numpy"])
@pytest.mark.parametrize("file", ["classes.ts", "classes.onnx"])
def test_argmax_gives_int32_class_labels(reg: FunctionRegistry, memory: str, file: str) -> None:
    got = _run(reg, memory, file=file, output="argmax")
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, classes_reference(STACK))
    assert set(np.unique(got)) == {0, 1, 2}


def test_planes_go_in_batches(reg: FunctionRegistry) -> None:
    got = _run(reg, "torch", file="batch.pt", batch=2)
    assert [float(plane.max()) for plane in got] == [2, 2, 2, 2, 1]
    assert np.unique(_run(reg, "numpy", file="batch.pt")).tolist() == [5]  # default batch 8: one call


def test_channel_of_a_multichannel_map(reg: FunctionRegistry) -> None:
    for channel in (0, 2):
        _close(_run(reg, "torch", file="three.pt", channel=channel), STACK.astype(np.float32) * (channel + 1))
    with pytest.raises(ValueError, match="returns 3 channels: say which with channel"):
        _run(reg, "torch", file="three.pt")
    with pytest.raises(ValueError, match="channel 5 asked for"):
        _run(reg, "numpy", file="three.pt", channel=5)
    _close(_run(reg, "torch", file="flat.pt"), STACK.astype(np.float32) + 1)  # [N, Y, X]: one channel


def test_model_errors_say_what_the_model_returned(reg: FunctionRegistry) -> None:
    with pytest.raises(ValueError, match=r"returned \[5, 1, 20, 24\] for planes \[5, 1, 40, 48\]"):
        _run(reg, "torch", file="half.pt")
    with pytest.raises(ValueError, match="argmax needs several output channels"):
        _run(reg, "torch", file="conv.pt", output="argmax")


def test_models_are_loaded_once_and_again_when_the_file_changes(tmp_path: Path) -> None:
    need("torch")
    registry = default_registry()
    use_models(registry, tmp_path)
    torchscript_module(tmp_path / "m.pt", "add", 1.0)
    model_runners.clear_cache()
    assert _run(registry, "torch", file="m.pt").max() == STACK.max() + 1
    assert _run(registry, "torch", file="m.pt").max() == STACK.max() + 1
    assert len(model_runners._loaded) == 1
    time.sleep(0.01)
    torchscript_module(tmp_path / "m.pt", "add", 2.0)
    os.utime(tmp_path / "m.pt", ns=(time.time_ns(), time.time_ns() + 10**9))
    assert _run(registry, "torch", file="m.pt").max() == STACK.max() + 2
    (tmp_path / "m.pt").unlink()  # removed after the spec was checked: the unit fails, saying so
    with pytest.raises(SpecError, match="not a file in the models folder"):
        _run(registry, "torch", file="m.pt")


def test_docs_export_recipes_make_files_hcsfs_runs(tmp_path: Path) -> None:
    """docs/pipelines.md "Your own models": torch.jit.script and torch.onnx.export of a small network."""
    need("torch")
    need("onnx")
    need("onnxruntime")
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 2, 1)).eval()
    torch.jit.script(net).save(str(tmp_path / "net.pt"))
    example = torch.zeros(1, 1, 64, 64)
    torch.onnx.export(net, (example,), str(tmp_path / "net.onnx"), dynamo=False, input_names=["planes"],
                      output_names=["out"], dynamic_axes={"planes": {0: "n", 2: "y", 3: "x"},
                                                          "out": {0: "n", 2: "y", 3: "x"}})
    registry = default_registry()
    use_models(registry, tmp_path)
    with torch.inference_mode():
        want = net(torch.from_numpy(STACK.astype(np.float32))[:, None]).numpy()
    for file in ("net.pt", "net.onnx"):
        _close(_run(registry, "numpy", file=file, channel=1), want[:, 1])
        np.testing.assert_array_equal(_run(registry, "torch", file=file, output="argmax"), want.argmax(1))


def test_docs_wrapper_normalizes_pads_and_exports(tmp_path: Path) -> None:
    """The documented wrapper: planes of any size (41 x 47 here) through a net that needs multiples of 16."""
    need("torch")
    need("onnx")
    need("onnxruntime")
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.MaxPool2d(16),
                              torch.nn.ConvTranspose2d(4, 1, 16, stride=16))
    model = for_hcsfs(net, mean=1200.0, std=400.0)
    torch.jit.script(model).save(str(tmp_path / "nuclei_unet.pt"))
    torch.onnx.export(model, (torch.zeros(1, 1, 512, 512),), str(tmp_path / "nuclei_unet.onnx"),
                      dynamo=False, input_names=["planes"], output_names=["prob"],
                      dynamic_axes={"planes": {0: "n", 2: "y", 3: "x"}, "prob": {0: "n", 2: "y", 3: "x"}})
    registry = default_registry()
    use_models(registry, tmp_path)
    stack = np.stack([blobs(RNG, (41, 47)) for _ in range(3)])
    with torch.inference_mode():
        want = model(torch.from_numpy(stack.astype(np.float32))[:, None]).numpy()[:, 0]
    assert want.shape == stack.shape and 0 < want.min() < want.max() < 1
    for file in ("nuclei_unet.pt", "nuclei_unet.onnx"):
        for memory in ("torch", "numpy"):
            _close(_run(registry, memory, stack, file=file), want)


def test_model_then_threshold_then_label_through_the_manager(models: Path, manager_factory) -> None:  # type: ignore[no-untyped-def]
    registry = default_registry()
    use_models(registry, models)
    plate = make_plate(wells=("A01", "B02"), channels=1, zs=2)
    spec = b"""channels: {DAPI: 1}
steps:
  - {func: model, input: DAPI, args: {file: conv.pt}, as: prob}
  - {func: threshold, input: prob, args: {value: 900.01}, as: mask}
  - {func: label, input: mask, as: nuclei}
  - {func: model, memory: numpy, input: DAPI, args: {file: classes.onnx, output: argmax}, as: classes}
  - {measure: [shape], objects: nuclei}
save: [prob, nuclei, classes]
"""
    manager = manager_factory(plate, registry=registry)
    manager.submit("seg.yaml", spec)
    doc = wait_state(manager, "seg", timeout=60)
    assert doc["state"] == "done" and not doc["errors"], json.dumps(doc)
    output = manager.output("seg")
    results = output.results()
    for key in plate.keys():
        stack = np.asarray(plate.read_plane(key))[None]
        prob = conv_reference(stack, "mirror")[0]
        got = np.asarray(results["prob"].read_plane(key))
        np.testing.assert_allclose(got, prob, atol=1e-5 * float(np.ptp(prob)))
        want = ndi.label(got > 900.01, structure=np.ones((3, 3)))[0]  # the served map: no rounding flips
        assert want.max() > 0
        np.testing.assert_array_equal(np.asarray(results["nuclei"].read_plane(key)), want)
        classes = np.asarray(results["classes"].read_plane(key))
        np.testing.assert_array_equal(classes, classes_reference(stack)[0])
    assert b"Count_nuclei" in output.table_bytes()["image.csv"]


# --- threshold ---------------------------------------------------------------------------------


def test_integer_cut() -> None:
    assert integer_cut(0, 65535, 0.5) == (0, None)
    assert integer_cut(0, 65535, -3.0) == (None, 1)
    assert integer_cut(0, 65535, 65535.0) == (None, 0)
    assert integer_cut(-128, 127, -128.5) == (None, 1)
    assert integer_cut(-128, 127, -127.5) == (-128, None)


CASES = [
    ("uint16", 1000.5), ("uint16", 1000.0), ("uint16", -1.0), ("uint16", 70000.0), ("float32", 0.5),
    ("int32", -2.5), ("uint8", 254.99), ("float32", -1e30), ("bool", 0.5),
]


@pytest.mark.parametrize("memory", [m.value for m in IMPLEMENTATIONS])
@pytest.mark.parametrize(("dtype", "value"), CASES, ids=[f"{d}-{v}" for d, v in CASES])
def test_threshold_equals_numpy_comparison(registry: FunctionRegistry, memory: str, dtype: str,
                                           value: float) -> None:
    memory_type = MemoryType(memory)
    if memory_type is MemoryType.CUPY:
        pytest.skip("no CUDA device") if not _cuda() else None
    elif not framework_installed(memory_type):
        need(memory_type.value)
    if dtype == "bool" and memory_type is MemoryType.PYCLESPERANTO:
        # clEsperanto has no boolean arrays: a bool stack reaches it as uint8 (memory conversion), so
        # the case compares that stack instead of skipping
        dtype = "uint8"
    rng = np.random.default_rng(1)
    if dtype == "float32":
        stack = rng.random((2, 17, 19)).astype(np.float32)
    elif dtype == "bool":
        stack = rng.random((2, 17, 19)) > 0.5
    elif dtype == "int32":
        stack = rng.integers(-6, 4, (2, 17, 19)).astype(np.int32)
    else:
        stack = rng.integers(0, np.iinfo(dtype).max, (2, 17, 19), endpoint=True).astype(dtype)
        stack.flat[:3] = (999, 1000, 1001) if dtype == "uint16" else (253, 254, 255)
    text = f"steps:\n  - {{func: threshold, memory: {memory}, args: {{value: {value}}}}}\n"
    spec = parse_spec("t.yaml", text.encode(), registry)
    assert spec.steps[0].memory is memory_type
    got = np.asarray(hm.convert(registry.implementation("threshold", memory)(stack.copy(), value=value),
                                MemoryType.NUMPY))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, (stack.astype(np.float64) > value).astype(np.uint8))


def _cuda() -> bool:
    from hcsfs.memory.backends import cuda_device_count

    try:
        return cuda_device_count() > 0
    except Exception:
        return False
