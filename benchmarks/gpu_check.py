"""``make gpu-check``: hcsfs's CUDA paths checked and measured on one GPU, in one command (issue 18).

``python -m benchmarks.gpu_check [--out DIR] [--dry-run] [--budget-s S]`` writes ``gpu.json`` and
``gpu.md`` into DIR (default: ``docs/`` when a CUDA device is used, ``bench-out/gpu-check/`` otherwise),
rewritten after every section, so a run stopped by its time limit still leaves what it measured. It
needs no FUSE: the pipelines run through :func:`hcsfs.pipelines.process.process_plate` (the engine of
``hcsfs process``) and ``python -m hcsfs process``.

Sections, each ``passed``, ``failed``, ``skipped`` (with its ``reason``) or ``error`` (a traceback):

- ``environment``: the device (name, memory, driver), the frameworks' versions, which of them see CUDA.
- ``cuda_tests``: the tests that skip with "no CUDA device" on CPU machines (tests/memory/test_cuda.py
  and the cupy cases of the pipeline tests), run by pytest in a child process; each test's outcome.
- ``conversions_cuda`` / ``conversions_cpu``: :func:`hcsfs.memory.convert` between every ordered pair of
  numpy, cupy, torch (CUDA) and jax (CUDA) on the device, and of numpy, torch and jax on the CPU, for six
  dtypes and a strided view: values equal, dtype and device kept, and whether the result shares the
  source's memory (pointer equality, read independently of hcsfs) or is a copy, with the method hcsfs's
  statistics counted (``hcsfs.memory.stats()``) and the time of a 64 MiB conversion.
- ``oom_cuda``: real CUDA out-of-memory errors under capped pools (cupy ``MemoryPool.set_limit``, torch
  ``set_per_process_memory_fraction``): a stack that fits only in quarters is split along Z and retried;
  a plane that fits nowhere runs on the CPU (torch) or fails with ``OutOfMemoryRecoveryError`` (cupy has
  no CPU device); the calls made and the counters of ``stats()`` against the expected ones.
- ``oom_emulated``: the same split case on torch's CPU allocator (a cap emulated by asking it for 4 TiB,
  its real out-of-memory error): the harness itself, on any machine.
- ``pipeline_cuda`` / ``pipeline_cpu``: the screen analysis (contrib/screen.yaml's steps: gaussian, Otsu,
  label, expand_labels, shape and intensity tables, ROI sets, heatmaps) on a generated plate, with
  ``device: cuda:0`` and ``memory: cupy`` (every step) or ``memory: torch`` (gaussian and Otsu; torch has
  no label), against the same spec on the CPU (numpy), within the tolerances of docs/pipelines.md. On
  the CPU: torch's CPU implementations against numpy.
- ``throughput_cuda`` / ``throughput_cpu``: units per second of the image steps (gaussian, Otsu, label,
  expand_labels, the cells saved as TIFF) at 1024x1024 and 2048x2048 with enough units to keep every
  worker busy, and of the whole screen analysis at 1024x1024, each GPU variant against the CPU run on the
  same planes with the same workers (a warm-up run first compiles cupy's kernels).
- ``process_cli``: ``python -m hcsfs process`` over a small TIFF folder (on cuda:0 when there is one).

Without a CUDA device, or with ``--dry-run``, every CUDA section says "no CUDA device" (or "dry run")
and everything that can run on a CPU runs, on small planes (tests/test_gpu_check.py runs it).
"""

from __future__ import annotations

import os

# jax takes 75 % of the GPU's memory at its first use unless told otherwise; cupy and torch share this
# process (and the pytest child) with it. Set before anything imports jax.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import csv  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import xml.etree.ElementTree as ElementTree  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = 1
NO_CUDA = "no CUDA device"
DRY_RUN = "dry run (--dry-run)"
CUDA_SECTIONS = ("cuda_tests", "conversions_cuda", "oom_cuda", "pipeline_cuda", "throughput_cuda")
SECTIONS = ("environment", "cuda_tests", "conversions_cuda", "conversions_cpu", "oom_cuda", "oom_emulated",
            "pipeline_cuda", "pipeline_cpu", "throughput_cuda", "throughput_cpu", "process_cli")
# The tests that skip with "no CUDA device" here: whole files, or the cases whose names say so.
CUDA_TEST_FILES = ("tests/memory/test_cuda.py", "tests/pipelines/test_functions.py",
                   "tests/pipelines/test_models.py", "tests/pipelines/test_library.py")
CUDA_TEST_KEYWORDS = "test_cuda or cupy or gpu or cuda"
DTYPES = ("uint8", "uint16", "int32", "float32", "bool", "float64")

# How the check runs: a part of every report, and of docs/gpu.md (tests/test_gpu_check.py checks).
HOW = (Path(__file__).parent / "gpu_check.md").read_text()
MiB = 1 << 20


# --- the report --------------------------------------------------------------------------------------


@dataclass
class Report:
    out: Path
    mode: str  # "device" or "dry-run"
    argv: list[str]
    started: float = field(default_factory=time.perf_counter)
    doc: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.doc = {"schema": SCHEMA, "tool": "benchmarks/gpu_check.py", "mode": self.mode,
                    "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "command": " ".join(["python -m benchmarks.gpu_check", *self.argv]),
                    "sections": {name: {"status": "pending"} for name in SECTIONS}}

    def set(self, name: str, section: dict[str, Any]) -> None:
        self.doc["sections"][name] = section
        self.write()

    def write(self) -> None:
        sections = self.doc["sections"]
        failed = [n for n, s in sections.items() if s.get("status") in ("failed", "error")]
        self.doc["summary"] = {
            "passed": not failed and all(s.get("status") != "pending" for s in sections.values()),
            "failed_sections": failed,
            "seconds": round(time.perf_counter() - self.started, 1),
        }
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "gpu.json").write_text(json.dumps(_plain(self.doc), indent=1) + "\n")
        try:
            markdown = render_markdown(self.doc)
        except Exception:  # the JSON holds every figure: a rendering bug must not stop the check
            markdown = f"# GPU check\n\nRendering failed (the figures are in gpu.json):\n\n```\n" \
                       f"{traceback.format_exc()}```\n"
        (self.out / "gpu.md").write_text(markdown)


def skipped(reason: str, **extra: Any) -> dict[str, Any]:
    return {"status": "skipped", "reason": reason, **extra}


def guarded(fn: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``fn(...)``, or a failed case holding the traceback: one broken case must not end a section."""
    try:
        return fn(*args, **kwargs)
    except Exception:
        return {"passed": False, "error": traceback.format_exc(limit=10)}


def _plain(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, tuples to lists, non-finite floats to strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def run_section(report: Report, name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    print(f"== {name}", flush=True)
    started = time.perf_counter()
    try:
        section = fn()
    except Exception:
        section = {"status": "error", "reason": traceback.format_exc(limit=12)}
    section.setdefault("seconds", round(time.perf_counter() - started, 2))
    print(f"   {section['status']}" + (f": {section['reason'].splitlines()[-1]}" if section.get("reason")
                                       else "") + f" ({section['seconds']} s)", flush=True)
    report.set(name, section)
    return section


@dataclass
class Deadline:
    seconds: float
    started: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)


# --- frameworks and the device ----------------------------------------------------------------------


def _version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _cupy_version() -> str | None:
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name == "cupy" or name.startswith("cupy-cuda"):
            return f"{dist.metadata['Name']} {dist.version}"
    return None


@functools.cache
def cuda_count() -> int:
    from hcsfs.memory.backends import cuda_device_count

    try:
        return cuda_device_count()
    except Exception:
        return 0


def probe_environment(use_cuda: bool) -> dict[str, Any]:
    env: dict[str, Any] = {
        "status": "passed", "python": platform.python_version(), "machine": platform.machine(),
        "cpu_count": os.cpu_count(), "hcsfs": _version("hcsfs") or "checkout",
        "versions": {"numpy": _version("numpy"), "cupy": _cupy_version(), "torch": _version("torch"),
                     "jax": _version("jax"), "jaxlib": _version("jaxlib"), "scipy": _version("scipy"),
                     "scikit-image": _version("scikit-image"), "tifffile": _version("tifffile")},
        "cuda_devices": cuda_count(), "xla_preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
        "commit": _commit(),
    }
    sees: dict[str, Any] = {}
    torch = _optional("torch")
    if torch is not None:
        sees["torch"] = {"cuda_build": torch.version.cuda, "cuda_available": bool(torch.cuda.is_available())}
    jax = _optional("jax")
    if jax is not None:
        sees["jax"] = {"devices": [str(d) for d in jax.devices()], "gpu": bool(_jax_gpus())}
    sees["cupy"] = {"devices": env["cuda_devices"]}
    env["frameworks_see"] = sees
    if env["cuda_devices"]:
        env["device"] = _device_facts()
    elif use_cuda:
        env["status"] = "failed"
    else:
        env["device"] = {"name": None, "reason": NO_CUDA}
    return env


def _commit() -> str | None:
    """The checkout's commit: from git, or from the note scripts/gpu_device_run.sh prepare leaves."""
    note = ROOT / ".whl" / "commit.txt"
    try:
        def git(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)

        done = git("rev-parse", "HEAD")
        if done.returncode == 0:
            changed = git("status", "--porcelain").stdout.count("\n")
            return f"{done.stdout.strip()} ({changed} files changed)"
    except (OSError, subprocess.SubprocessError):
        pass
    return note.read_text().strip() if note.exists() else None


def _device_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {}
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        facts["name"] = name.decode() if isinstance(name, bytes) else str(name)
        facts["memory_gib"] = round(props["totalGlobalMem"] / (1 << 30), 1)
        facts["compute_capability"] = f"{props['major']}.{props['minor']}"
        facts["multiprocessors"] = props["multiProcessorCount"]
        facts["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
        facts["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    except Exception as exc:  # cupy may be missing: torch still tells
        facts["cupy_error"] = f"{type(exc).__name__}: {exc}"
        torch = _optional("torch")
        if torch is not None and torch.cuda.is_available():
            facts["name"] = torch.cuda.get_device_name(0)
            facts["memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / (1 << 30), 1)
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        facts["nvidia_smi"] = out.stdout.strip() or out.stderr.strip()
    return facts


def _optional(module: str) -> Any:
    from hcsfs import memory as hm

    try:
        return hm.import_framework(module)
    except ImportError:
        return None


def _jax_x64() -> bool:
    jax = _optional("jax")
    return bool(jax is not None and jax.config.read("jax_enable_x64"))


def _jax_gpus() -> list[Any]:
    jax = _optional("jax")
    if jax is None:
        return []
    try:
        return list(jax.devices("gpu"))
    except RuntimeError:
        return []


# --- arrays on a placement, read without hcsfs ------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """A framework's array on a device: ``numpy@cpu``, ``cupy@cuda:0``, ``torch@cuda:0``, ``jax@cpu``."""

    kind: str
    device: str

    def __str__(self) -> str:
        return f"{self.kind}@{self.device}"

    @property
    def on_gpu(self) -> bool:
        return self.device != "cpu"


def aligned(host: np.ndarray) -> np.ndarray:
    """A copy on a 64-byte boundary (jax imports host memory without a copy only then)."""
    raw = np.empty(host.nbytes + 64, np.uint8)
    offset = (-raw.ctypes.data) % 64
    out = raw[offset:offset + host.nbytes].view(host.dtype).reshape(host.shape)
    out[...] = host
    return out


def make_array(place: Placement, host: np.ndarray) -> Any:
    if place.kind == "numpy":
        return aligned(host)
    if place.kind == "cupy":
        import cupy

        with cupy.cuda.Device(int(place.device.partition(":")[2])):
            return cupy.asarray(host)
    if place.kind == "torch":
        import torch

        return torch.tensor(host, device=place.device)  # torch's own allocator (aligned)
    if place.kind == "jax":
        import jax

        platform_ = "cpu" if place.device == "cpu" else "gpu"
        return jax.device_put(host, jax.devices(platform_)[int(place.device.partition(":")[2] or 0)])
    raise ValueError(place.kind)


def strided(place: Placement, array: Any) -> Any:
    """A non-contiguous view (every other column), or None where the framework has none (jax)."""
    return None if place.kind == "jax" else array[:, :, ::2]


def address(kind: str, array: Any) -> int:
    if kind == "numpy":
        return int(array.__array_interface__["data"][0])
    if kind == "cupy":
        return int(array.data.ptr)
    if kind == "torch":
        return int(array.data_ptr())
    return int(array.unsafe_buffer_pointer())


def host_values(kind: str, array: Any) -> np.ndarray:
    if kind == "numpy":
        return np.asarray(array)
    if kind == "cupy":
        return array.get()  # type: ignore[no-any-return]
    if kind == "torch":
        return array.detach().cpu().numpy()  # type: ignore[no-any-return]
    return np.asarray(array)


def synchronize(kind: str, array: Any) -> None:
    if kind == "cupy":
        import cupy

        cupy.cuda.get_current_stream().synchronize()
    elif kind == "torch" and array.is_cuda:
        import torch

        torch.cuda.synchronize()
    elif kind == "jax":
        array.block_until_ready()


def sample(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    count = int(np.prod(shape))
    if dtype == "bool":
        return (np.arange(count) % 3 == 0).reshape(shape)
    values = np.arange(count) % (251 if dtype == "uint8" else 60001)
    out = values.astype(dtype).reshape(shape)
    if dtype.startswith("float"):
        out = out * np.asarray(0.25, dtype) - np.asarray(7.5, dtype)
    return out


# --- the conversion matrix --------------------------------------------------------------------------


def conversion_matrix(places: list[Placement], big_mib: int) -> dict[str, Any]:
    """Every ordered pair of ``places``, each dtype, plus a strided view and a timed big array."""
    from hcsfs import memory as hm

    hm.load_frameworks(*{p.kind for p in places})
    totals: dict[str, int] = {}
    pairs = []
    ok = True
    for source in places:
        for target in places:
            if source == target:
                continue
            row = {"source": str(source), "target": str(target), "source_on_gpu": source.on_gpu,
                   "target_on_gpu": target.on_gpu, "failures": ["error"], "method": None,
                   **guarded(convert_pair, source, target, big_mib, totals)}
            ok = ok and row["passed"]
            pairs.append(row)
    notes = [f"{r['source']} -> {r['target']}: {r['method']} (a host round trip between GPU frameworks)"
             for r in pairs if r["method"] == "host_round_trip" and r["source_on_gpu"] and r["target_on_gpu"]]
    return {"status": "passed" if ok else "failed", "placements": [str(p) for p in places], "dtypes": DTYPES,
            "pairs": pairs, "stats_totals": totals, "notes": notes}


def _gpu_id(source: Placement, target: Placement) -> int | None:
    """An explicit GPU where the data must move there; None keeps it on its device."""
    if target.on_gpu and not source.on_gpu:
        return int(target.device.partition(":")[2])
    return None


def _one_conversion(source: Placement, target: Placement, data: Any, expected: np.ndarray,
                    totals: dict[str, int]) -> dict[str, Any]:
    from hcsfs import memory as hm

    before = dict(hm.stats().conversions)
    try:
        result = hm.convert(data, target.kind, _gpu_id(source, target))
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}", "passed": False}
    counted = {f"{s}->{d}:{m}": n - before.get((s, d, m), 0)
               for (s, d, m), n in hm.stats().conversions.items() if n != before.get((s, d, m), 0)}
    for key, n in counted.items():
        totals[key] = totals.get(key, 0) + n
    methods = sorted({key.rpartition(":")[2] for key in counted})
    got = host_values(target.kind, result)
    placed = str(hm.device_of(result, hm.MemoryType(target.kind)))
    shared = address(source.kind, data) == address(target.kind, result)
    method = methods[0] if len(methods) == 1 else "+".join(methods)
    zero_copy = method in ("identity", "dlpack", "cuda_array_interface")
    row = {
        "method": method, "shared": shared, "values_equal": bool(np.array_equal(got, expected)),
        "dtype": str(got.dtype), "dtype_kept": got.dtype == expected.dtype,
        "device": placed, "device_ok": placed == target.device,
        # a zero-copy method must share memory; a copy must not alias the source
        "consistent": zero_copy == shared,
    }
    row["passed"] = all(row[k] for k in ("values_equal", "dtype_kept", "device_ok", "consistent"))
    return row


def convert_pair(source: Placement, target: Placement, big_mib: int, totals: dict[str, int]
                 ) -> dict[str, Any]:
    row: dict[str, Any] = {"source": str(source), "target": str(target), "source_on_gpu": source.on_gpu,
                           "target_on_gpu": target.on_gpu, "dtypes": {}}
    for dtype in DTYPES:
        host = sample((3, 40, 48), dtype)
        try:
            data = make_array(source, host)
        except Exception as exc:  # jax without x64 has no float64: not a conversion's failure
            row["dtypes"][dtype] = {"skipped": f"{source.kind} cannot hold {dtype}: {type(exc).__name__}"}
            continue
        if source.kind == "jax" and str(data.dtype) != dtype:
            row["dtypes"][dtype] = {"skipped": f"jax stores {dtype} as {data.dtype} (no jax_enable_x64)"}
            continue
        if target.kind == "jax" and dtype == "float64" and not _jax_x64():
            # documented: without jax_enable_x64, jax would store float32; convert refuses to change a dtype
            case = _one_conversion(source, target, data, host, totals)
            refused = "MemoryConversionError" in str(case.get("error")) and "dtype" in str(case.get("error"))
            row["dtypes"][dtype] = {**case, "expected": "MemoryConversionError (no jax_enable_x64)",
                                    "passed": refused}
            continue
        row["dtypes"][dtype] = _one_conversion(source, target, data, host, totals)
    host = sample((3, 40, 48), "float32")
    view = strided(source, make_array(source, host))
    if view is None:
        row["strided"] = {"skipped": f"{source.kind} has no strided views"}
    else:
        row["strided"] = _one_conversion(source, target, view, host[:, :, ::2], totals)
    main = row["dtypes"]["float32"]
    row["method"], row["shared"] = main.get("method"), main.get("shared")
    row["timing"] = _timed(source, target, big_mib)
    cases = [c for c in (*row["dtypes"].values(), row["strided"]) if "skipped" not in c]
    row["passed"] = all(c["passed"] for c in cases)
    row["failures"] = [name for name, c in (*row["dtypes"].items(), ("strided", row["strided"]))
                       if "skipped" not in c and not c["passed"]]
    return row


def _timed(source: Placement, target: Placement, mib: int) -> dict[str, Any]:
    from hcsfs import memory as hm

    side = int((mib * MiB / 4 / 16) ** 0.5)
    data = make_array(source, np.ones((16, side, side), np.float32))
    synchronize(source.kind, data)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        result = hm.convert(data, target.kind, _gpu_id(source, target))
        synchronize(target.kind, result)
        times.append(time.perf_counter() - started)
        del result
    seconds = statistics.median(times)
    nbytes = 16 * side * side * 4
    return {"mib": round(nbytes / MiB, 1), "median_ms": round(seconds * 1e3, 3),
            "gb_per_s": round(nbytes / seconds / 1e9, 1) if seconds > 0 else None}


# --- out-of-memory recovery -------------------------------------------------------------------------


@dataclass
class OomBackend:
    """Where a workload runs, how its out-of-memory error comes, and how its pool is capped."""

    name: str
    memory_type: str
    cap: Callable[[int], contextlib.AbstractContextManager[None]]
    widen_max: Callable[[Any, int, int], Any]  # (stack, k, cap bytes) -> max over k shifted copies
    emulated: bool = False


def _torch_widen_max(stack: Any, k: int, cap: int, emulated: bool) -> Any:
    import torch

    if emulated and stack.numel() * stack.element_size() * k > cap:
        torch.empty(1 << 42, dtype=torch.uint8)  # torch's CPU allocator: a real out-of-memory error
    offsets = torch.arange(k, dtype=stack.dtype, device=stack.device)
    return (stack[:, None] + offsets[None, :, None, None]).amax(dim=1)


def _cupy_widen_max(stack: Any, k: int, cap: int) -> Any:
    import cupy

    offsets = cupy.arange(k, dtype=stack.dtype)
    return (stack[:, None] + offsets[None, :, None, None]).max(axis=1)


@contextlib.contextmanager
def _torch_cap(cap: int) -> Iterator[None]:
    import torch

    gc.collect()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(cap / total, 0)
    try:
        yield
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        gc.collect()
        torch.cuda.empty_cache()


@contextlib.contextmanager
def _cupy_cap(cap: int) -> Iterator[None]:
    import cupy

    pool = cupy.get_default_memory_pool()
    gc.collect()
    pool.free_all_blocks()
    previous = pool.get_limit()
    pool.set_limit(size=cap)
    try:
        yield
    finally:
        pool.set_limit(size=previous)  # 0: no limit
        gc.collect()
        pool.free_all_blocks()


@contextlib.contextmanager
def _no_cap(cap: int) -> Iterator[None]:
    yield


def oom_case(backend: OomBackend, *, name: str, mode: str, z: int, side: int, k: int, cap: int,
             gpu_id: int | None, expected: dict[str, Any]) -> dict[str, Any]:
    """One decorated workload needing ``k`` x its stack of memory, under a pool capped at ``cap`` bytes."""
    from hcsfs import memory as hm

    calls: list[dict[str, Any]] = []

    @hm.memory_types(backend.memory_type, oom_recovery=mode)
    def workload(stack: Any) -> Any:
        execution = hm.current_execution()
        calls.append({"z": int(stack.shape[0]), "device": str(hm.device_of(stack, hm.MemoryType(
            backend.memory_type))), "cpu_fallback": bool(execution and execution.cpu_fallback)})
        return backend.widen_max(stack, k, cap)

    host = sample((z, side, side), "float32")
    want = host + np.float32(k - 1)
    hm.reset_stats()
    case: dict[str, Any] = {"case": name, "framework": backend.name, "mode": mode, "stack": [z, side, side],
                            "workspace_mib_per_plane": round(side * side * 4 * k / MiB, 3),
                            "cap_mib": round(cap / MiB, 3), "emulated_cap": backend.emulated, "raised": None}
    with backend.cap(cap):
        try:
            out = workload(host, gpu_id=gpu_id)  # type: ignore[call-arg]  # the decorator adds gpu_id
            kind = hm.detect_memory_type(out).value
            case["result_device"] = str(hm.device_of(out, hm.MemoryType(kind)))
            case["values_equal"] = bool(np.array_equal(host_values(kind, out), want))
            del out
        except Exception as exc:
            case["raised"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            case["cause"] = type(exc.__cause__).__name__ if exc.__cause__ else None
    counts = {event.value: hm.stats()[event] for event in hm.OomEvent}
    observed: dict[str, Any] = {"calls": [[c["z"], c["device"]] for c in calls], **counts}
    mismatches = [key for key, value in expected.items()
                  if key != "raises" and observed.get(key) != _plain(value)]
    if expected.get("raises"):
        if not (case["raised"] and expected["raises"] in case["raised"]):
            mismatches.append("raises")
    elif not case.get("values_equal"):
        mismatches.append("values_equal" if case["raised"] is None else "raised")
    case.update(calls=calls, counts=counts, expected=expected, mismatches=mismatches, passed=not mismatches)
    return case


def _split_expectation(device: str) -> dict[str, Any]:
    # 16 planes fit only as quarters: 16 -> 8 + 8, each 8 -> 4 + 4.
    return {"calls": [(16, device), (8, device), (4, device), (4, device), (8, device), (4, device),
                      (4, device)],
            "oom_errors": 3, "splits": 3, "retries": 6, "cleanups": 3, "cpu_fallbacks": 0, "recovered": 1,
            "failed": 0}


def oom_cuda() -> dict[str, Any]:
    from hcsfs import memory as hm

    cases = []
    gpu = "cuda:0"
    frameworks = []
    if cuda_count():
        frameworks.append(OomBackend("cupy", "cupy", _cupy_cap, _cupy_widen_max))
    torch = _optional("torch")
    if torch is not None and torch.cuda.is_available():
        frameworks.append(OomBackend("torch", "torch", _torch_cap,
                                     lambda s, k, cap: _torch_widen_max(s, k, cap, False)))
    hm.load_frameworks(*{b.memory_type for b in frameworks})
    for backend in frameworks:
        def case(name: str, mode: str, z: int, k: int, expected: dict[str, Any],
                 backend: OomBackend = backend) -> None:
            cases.append({"case": name, "framework": backend.name, **guarded(
                oom_case, backend, name=name, mode=mode, z=z, side=1024, k=k, cap=768 * MiB, gpu_id=0,
                expected=expected)})

        # 1024 x 1024 float32 planes (4 MiB); a workspace of 32 planes per plane (128 MiB) under a 768 MiB
        # cap: 16 planes (2 GiB) and 8 (1 GiB) do not fit, 4 (512 MiB) do.
        case("split along Z", "split", 16, 32, _split_expectation(gpu))
        # 256 planes per plane (1 GiB): not even one plane fits.
        if backend.name == "torch":
            case("no plane fits: CPU fallback", "split", 2, 256, {
                "calls": [(2, gpu), (1, gpu), (1, "cpu"), (1, gpu), (1, "cpu")],
                "oom_errors": 3, "splits": 1, "retries": 2, "cpu_fallbacks": 2, "recovered": 1, "failed": 0})
            case("oom_recovery=cpu", "cpu", 16, 32, {
                "calls": [(16, gpu), (16, "cpu")], "oom_errors": 1, "splits": 0, "cpu_fallbacks": 1,
                "recovered": 1, "failed": 0})
        else:  # cupy has no CPU device
            case("no plane fits: CPU fallback", "split", 2, 256, {
                "calls": [(2, gpu), (1, gpu)], "oom_errors": 2, "splits": 1, "retries": 1, "cpu_fallbacks": 0,
                "recovered": 0, "failed": 1, "raises": "OutOfMemoryRecoveryError"})
    if not frameworks:
        return {"status": "failed", "reason": "neither cupy nor torch sees the CUDA device", "cases": []}
    return {"status": "passed" if all(c["passed"] for c in cases) else "failed", "cases": cases}


def oom_emulated() -> dict[str, Any]:
    torch = _optional("torch")
    if torch is None:
        return skipped("torch is not installed")
    backend = OomBackend("torch (CPU allocator)", "torch", _no_cap,
                         lambda s, k, cap: _torch_widen_max(s, k, cap, True), emulated=True)
    # 64 x 64 planes (16 KiB), 32 per plane of workspace (512 KiB), a 2.5 MiB cap: quarters fit.
    case = oom_case(backend, name="split along Z", mode="split", z=16, side=64, k=32, cap=5 * MiB // 2,
                    gpu_id=None, expected=_split_expectation("cpu"))
    return {"status": "passed" if case["passed"] else "failed", "cases": [case]}


# --- pipelines --------------------------------------------------------------------------------------


def nuclei_planes(seed: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """DAPI-like nuclei (one per ~3000 px^2) and a wider, dimmer GFP around each, uint16."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    count = max(4, side * side // 3000)
    ys, xs = rng.integers(0, side, count), rng.integers(0, side, count)
    planes = []
    for sigma, peak, spread in ((4.0, 2600.0, 0.3), (9.0, 700.0, 0.8)):
        impulses = np.zeros((side, side), np.float32)
        weights = peak * rng.uniform(1 - spread, 1 + spread, count) * 2 * np.pi * sigma**2
        np.add.at(impulses, (ys, xs), weights)
        image = ndi.gaussian_filter(impulses, sigma, truncate=3.0) + rng.normal(200, 20, (side, side))
        planes.append(np.clip(image, 0, 65535).astype(np.uint16))
    return planes[0], planes[1]


def make_plate(side: int, units: int, distinct: int = 8) -> Any:
    from hcsfs import MemoryPlate, PlaneKey

    pool = [nuclei_planes(seed, side) for seed in range(min(units, distinct))]
    planes: dict[PlaneKey | str, np.ndarray] = {}
    for unit in range(units):
        well = f"{'ABCDEFGHIJKLMNOP'[unit // 4 // 24 % 16]}{unit // 4 % 24 + 1:02d}"
        dapi, gfp = pool[unit % len(pool)]
        planes[PlaneKey(well, unit % 4 + 1, 1, 1, 1)] = dapi
        planes[PlaneKey(well, unit % 4 + 1, 2, 1, 1)] = gfp
    return MemoryPlate(planes, pixel_size_um=0.65, channel_names={1: "DAPI", 2: "GFP"})


@dataclass(frozen=True)
class Variant:
    """A way of running the screen steps: the spec's device and each step's memory type."""

    name: str
    device: str
    memory: tuple[str | None, str | None, str | None, str | None]  # gaussian, otsu, label, expand_labels

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")


CPU_VARIANT = Variant("numpy", "cpu", (None, None, None, None))
CUPY_VARIANT = Variant("cupy", "cuda:0", ("cupy", "cupy", "cupy", "cupy"))
TORCH_VARIANT = Variant("torch", "cuda:0", ("torch", "torch", None, None))  # torch has no label
TORCH_CPU_VARIANT = Variant("torch (CPU)", "cpu", ("torch", "torch", None, None))


def screen_spec(variant: Variant, *, full: bool, save: tuple[str, ...]) -> dict[str, Any]:
    """contrib/screen.yaml's analysis with the variant's device and memory types, TIFF outputs."""
    names: tuple[tuple[str, str, dict[str, Any], str], ...] = (
        ("gaussian_filter", "DAPI", {"sigma": 2}, "smooth"), ("threshold_otsu", "smooth", {}, "mask"),
        ("label", "mask", {}, "nuclei"), ("expand_labels", "nuclei", {"distance": 5}, "cells"))
    steps: list[dict[str, Any]] = []
    for (func, source, args, result), memory in zip(names, variant.memory, strict=True):
        step: dict[str, Any] = {"func": func, "input": source, "as": result}
        if args:
            step["args"] = args
        if memory:
            step["memory"] = memory
        steps.append(step)
    spec: dict[str, Any] = {"name": "screen", "channels": {"DAPI": 1, "GFP": 2}, "device": variant.device,
                            "output": "tiff", "steps": steps, "save": list(save)}
    if full:
        steps += [{"measure": ["shape", "intensity"], "objects": "nuclei", "channels": ["DAPI", "GFP"],
                   "table": "nuclei"},
                  {"measure": ["intensity"], "objects": "cells", "channels": ["GFP"], "table": "cells"}]
        spec["rois"] = ["nuclei"]
        spec["heatmaps"] = ["Count_nuclei", "Intensity_MeanIntensity_GFP_nuclei"]
    return spec


def run_spec(plate: Any, spec: dict[str, Any], work: Path, tag: str, workers: int) -> dict[str, Any]:
    """``process_plate`` into a fresh folder; the final status, the seconds and hcsfs's counters."""
    from hcsfs import memory as hm
    from hcsfs.pipelines.process import process_plate

    folder = work / tag
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    spec_file = work / f"{tag}.json"
    spec_file.write_text(json.dumps(spec))
    hm.reset_stats()
    started = time.perf_counter()
    status = process_plate(plate, spec_file, folder / "run", workers=workers)
    seconds = time.perf_counter() - started
    stats = hm.stats()
    hm.cleanup_gpu_memory()
    return {"folder": folder / "run", "seconds": seconds, "state": status["state"], "done": status["done"],
            "total": status["total"], "device": status.get("device"), "fallback": status.get("fallback"),
            "errors": status.get("errors", [])[:5],
            "conversions": {f"{s}->{d}:{m}": n for (s, d, m), n in stats.conversions.items()},
            "oom": {e.value: stats[e] for e in hm.OomEvent if stats[e]}}


def _planes(run: Path, result: str) -> dict[str, np.ndarray]:
    import tifffile

    return {p.name: tifffile.imread(p) for p in sorted((run / "data" / result / "tiff").glob("*.tif"))}


def compare_runs(reference: Path, other: Path) -> dict[str, Any]:
    """The other run's outputs against the reference run's, by docs/pipelines.md's tolerances."""
    out: dict[str, Any] = {}
    masks_equal = True
    seeds: dict[str, np.ndarray] = {}
    for result, kind in (("smooth", "float"), ("mask", "mask"), ("nuclei", "labels"), ("cells", "expand")):
        ref, got = _planes(reference, result), _planes(other, result)
        if sorted(ref) != sorted(got) or not ref:
            reason = f"planes differ: {sorted(ref)[:3]} vs {sorted(got)[:3]}"
            out[result] = {"passed": False, "reason": reason}
            continue
        if kind == "float":
            worst = max(float(np.max(np.abs(got[n].astype(np.float64) - ref[n]))) /
                        (float(np.ptp(ref[n])) or 1.0) for n in ref)
            out[result] = {"rule": "|a - b| <= 1e-4 x range", "worst_relative": worst,
                           "passed": worst <= 1e-4}
        elif kind == "mask":
            worst = max(float(np.mean(got[n] != ref[n])) for n in ref)
            masks_equal = all(np.array_equal(got[n], ref[n]) for n in ref)
            out[result] = {"rule": "<= 0.5 % of pixels differ", "worst_fraction": worst, "equal": masks_equal,
                           "passed": worst <= 0.005}
        else:
            if kind == "labels":
                seeds = ref if all(np.array_equal(got[n], ref[n]) for n in ref) else {}
            out[result] = _compare_labels(ref, got, kind, masks_equal, seeds)
    out["tables"] = _compare_tables(reference, other, out)
    out["rois"] = _compare_rois(reference, other, out)
    out["passed"] = all(v.get("passed", False) for v in out.values())
    return out


def _compare_labels(ref: dict[str, np.ndarray], got: dict[str, np.ndarray], kind: str, masks_equal: bool,
                    seeds: dict[str, np.ndarray]) -> dict[str, Any]:
    differing = sum(int(np.count_nonzero(got[n] != ref[n])) for n in ref)
    pixels = sum(ref[n].size for n in ref)
    objects = [sum(_objects(ref[n]) for n in ref), sum(_objects(got[n]) for n in ref)]
    row: dict[str, Any] = {"equal": differing == 0, "differing_fraction": differing / pixels,
                           "objects": objects}
    if differing == 0:
        row.update(rule="exactly", passed=True)
    elif kind == "expand" and seeds:
        ties = all(_ties_only(ref[n], got[n], seeds[n]) for n in ref)
        row.update(rule="exactly, or another label at the same distance (a tie)", ties_only=ties, passed=ties)
    elif masks_equal:
        row.update(rule="exactly (the masks are equal)", passed=False)
    else:  # a pixel at the threshold moved: the objects must still match one to one
        matched = min(_matched_fraction(ref[n], got[n]) for n in ref)
        row.update(rule="masks differ: >= 99 % of objects match (IoU >= 0.95)", matched_fraction=matched,
                   passed=matched >= 0.99)
    return row


def _objects(labels: np.ndarray) -> int:
    return int(np.count_nonzero(np.unique(labels)))


def _ties_only(ref: np.ndarray, got: np.ndarray, seeds: np.ndarray) -> bool:
    """Every pixel where two expand_labels results differ is exactly as near to both labels' seeds."""
    from scipy import ndimage as ndi

    ys, xs = np.nonzero(ref != got)
    if len(ys) > 20000:
        return False
    boxes = ndi.find_objects(seeds)
    coords: dict[int, np.ndarray] = {}

    def nearest_sq(label: int, y: int, x: int) -> int:
        if label not in coords:
            box = boxes[label - 1] if 0 < label <= len(boxes) else None
            if box is None:
                return -1
            coords[label] = np.argwhere(seeds[box] == label) + [box[0].start, box[1].start]
        points = coords[label]
        return int(np.min((points[:, 0] - y) ** 2 + (points[:, 1] - x) ** 2))

    for y, x in zip(ys.tolist(), xs.tolist(), strict=True):
        a, b = int(ref[y, x]), int(got[y, x])
        if a == 0 or b == 0 or nearest_sq(a, y, x) != nearest_sq(b, y, x):
            return False
    return True


def _matched_fraction(ref: np.ndarray, got: np.ndarray) -> float:
    if not np.any(ref):
        return 1.0
    both = (ref > 0) & (got > 0)
    pairs, overlap = np.unique(np.stack([ref[both], got[both]]), axis=1, return_counts=True)
    area_ref, area_got = np.bincount(ref.ravel()), np.bincount(got.ravel())
    iou = overlap / (area_ref[pairs[0]] + area_got[pairs[1]] - overlap)
    return len(set(pairs[0][iou >= 0.95].tolist())) / _objects(ref)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _compare_tables(reference: Path, other: Path, compared: dict[str, Any]) -> dict[str, Any]:
    names = sorted(p.name for p in (reference / "tables").glob("*.csv"))
    got_names = sorted(p.name for p in (other / "tables").glob("*.csv"))
    if names != got_names:
        return {"passed": False, "reason": f"tables {names} vs {got_names}"}
    if not (compared.get("nuclei", {}).get("equal") and compared.get("cells", {}).get("equal")):
        return {"passed": True, "compared": False, "reason": "labels differ (judged above): rows differ too"}
    worst = 0.0
    for name in names:
        ref, got = _read_csv(reference / "tables" / name), _read_csv(other / "tables" / name)
        if len(ref) != len(got) or (ref and list(ref[0]) != list(got[0])):
            return {"passed": False, "reason": f"{name}: {len(ref)} rows vs {len(got)}, or other columns"}
        for a, b in zip(ref, got, strict=True):
            for column, value in a.items():
                worst = max(worst, _relative(value, b[column]))
    return {"tables": names, "worst_relative": worst, "rule": "equal to 1e-9 (same labels, same pixels)",
            "passed": worst <= 1e-9}


def _relative(a: str, b: str) -> float:
    if a == b:
        return 0.0
    try:
        x, y = float(a), float(b)
    except ValueError:
        return float("inf")
    if np.isnan(x) and np.isnan(y):
        return 0.0
    return abs(x - y) / max(abs(x), abs(y), 1e-300)


def _compare_rois(reference: Path, other: Path, compared: dict[str, Any]) -> dict[str, Any]:
    ref = {p.name: p.read_bytes() for p in (reference / "rois").glob("*.zip")}
    got = {p.name: p.read_bytes() for p in (other / "rois").glob("*.zip")}
    if not compared.get("nuclei", {}).get("equal"):
        return {"passed": True, "compared": False, "files": [len(ref), len(got)]}
    same = sorted(ref) == sorted(got) and all(ref[n] == got[n] for n in ref)
    return {"files": len(ref), "bytes_equal": same, "passed": same}


def pipeline_section(variants: list[Variant], side: int, units: int, workers: int, work: Path
                     ) -> dict[str, Any]:
    plate = make_plate(side, units)
    save = ("smooth", "mask", "nuclei", "cells")
    reference = run_spec(plate, screen_spec(CPU_VARIANT, full=True, save=save), work, "reference", workers)
    runs = [{"variant": CPU_VARIANT.name, **_public(reference)}]
    comparisons = []
    for variant in variants:
        row: dict[str, Any] = {"variant": variant.name, "device": variant.device, "memory": variant.memory,
                               "problems": []}
        row.update(guarded(_pipeline_variant, variant, plate, reference, save, work, workers, runs))
        comparisons.append(row)
    ok = reference["state"] == "done" and all(row["passed"] for row in comparisons)
    return {"status": "passed" if ok else "failed", "plate": {"side": side, "units": units, "channels": 2,
                                                              "workers": workers},
            "reference": CPU_VARIANT.name, "runs": runs, "comparisons": comparisons}


def _pipeline_variant(variant: Variant, plate: Any, reference: dict[str, Any], save: tuple[str, ...],
                      work: Path, workers: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    tag = "".join(c if c.isalnum() else "-" for c in variant.name)
    run = run_spec(plate, screen_spec(variant, full=True, save=save), work, tag, workers)
    runs.append({"variant": variant.name, **_public(run)})
    problems = []
    if run["state"] != "done" or run["errors"]:
        problems.append(f"state {run['state']}, errors {run['errors']}")
    if run["device"] != variant.device or run["fallback"]:
        problems.append(f"ran on {run['device']} (fallback: {run['fallback']})")
    row: dict[str, Any] = {"ran_as_asked": not problems, "problems": problems}
    if run["state"] == "done" and reference["state"] == "done":
        row["outputs"] = compare_runs(reference["folder"], run["folder"])
    row["passed"] = not problems and row.get("outputs", {}).get("passed", False)
    return row


def _public(run: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in run.items() if k != "folder"}


def throughput_section(variants: list[Variant], sizes: list[int], units: int, workers: int, work: Path,
                       deadline: Deadline, *, warm_up: bool) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    cases = [("image steps", side, False) for side in sizes] + [("screen analysis", sizes[0], True)]
    last: tuple[float, int] = (5.0, sizes[0])  # seconds and side of the last run: the next one's estimate
    for case, side, full in cases:
        plate = make_plate(side, units)
        warm = make_plate(side, 2) if warm_up else None
        baseline: dict[str, Any] | None = None
        for variant in (CPU_VARIANT, *variants):
            row: dict[str, Any] = {"case": case, "side": side, "units": units, "workers": workers,
                                   "variant": variant.name, "device": variant.device}
            needed = 2 * last[0] * (side / last[1]) ** 2 * (3 if full else 1) + 5
            if deadline.left() < needed:
                row.update(skipped=f"time budget: {deadline.left():.0f} s left, about {needed:.0f} s needed")
                rows.append(row)
                continue
            row.update(guarded(_throughput_row, variant, plate, warm, full, units, side, workers, work))
            if "seconds" in row:
                last = (row["seconds"], side)
                if variant is CPU_VARIANT:
                    baseline = row
                elif baseline is not None and baseline["passed"] and row["passed"]:  # failed units are fast
                    row["ratio_vs_cpu"] = round(baseline["seconds"] / row["seconds"], 2)
            rows.append(row)
    ok = all(r.get("passed", True) for r in rows)
    return {"status": "passed" if ok else "failed", "rows": rows,
            "note": "ratio_vs_cpu: CPU (numpy) seconds / variant seconds on the same planes, same workers"}


def _throughput_row(variant: Variant, plate: Any, warm: Any, full: bool, units: int, side: int, workers: int,
                    work: Path) -> dict[str, Any]:
    spec = screen_spec(variant, full=full, save=("cells",))
    if warm is not None:  # loads the code, compiles cupy's kernels
        run_spec(warm, spec, work, "warm", workers)
    run = run_spec(plate, spec, work, "timed", workers)
    shutil.rmtree(work / "timed", ignore_errors=True)
    return {"seconds": round(run["seconds"], 3), "units_per_s": round(units / run["seconds"], 2),
            "megapixels_per_s": round(units * side * side / 1e6 / run["seconds"], 1),  # of sites (DAPI)
            "state": run["state"], "ran_on": run["device"], "fallback": run["fallback"],
            "errors": run["errors"], "oom": run["oom"],
            "passed": run["state"] == "done" and not run["errors"] and run["device"] == variant.device}


# --- the CUDA tests ---------------------------------------------------------------------------------


def run_pytest(paths: list[str], keywords: str | None, timeout: float, cwd: Path,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    """pytest in a child process (``env`` added to this one's); every test's outcome from its JUnit XML."""
    with tempfile.TemporaryDirectory(prefix="hcsfs-gpu-check-") as tmp:
        xml = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", *paths, "-p", "no:cacheprovider", "-q", "-rs",
                   f"--junitxml={xml}", f"--basetemp={Path(tmp) / 'base'}"]
        if keywords:
            command += ["-k", keywords]
        started = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, **(env or {})})
            rc, tail = done.returncode, (done.stdout + done.stderr)[-4000:]
        except subprocess.TimeoutExpired as exc:
            rc, tail = None, f"timed out after {timeout:.0f} s\n" + str(exc.stdout or "")[-3000:]
        tests = _junit_tests(xml) if xml.exists() else []
    counts = {o: sum(t["outcome"] == o for t in tests) for o in ("passed", "failed", "error", "skipped")}
    # pytest's exit 5: nothing collected (or everything deselected)
    ok = rc in (0, 5) and counts["failed"] == counts["error"] == 0
    return {"status": "passed" if ok else "failed", "command": " ".join(command[1:]), "returncode": rc,
            "seconds": round(time.perf_counter() - started, 1), "counts": counts, "tests": tests,
            "output_tail": tail if not ok else tail[-1500:]}


def _junit_tests(xml: Path) -> list[dict[str, Any]]:
    tests = []
    for case in ElementTree.parse(xml).getroot().iter("testcase"):
        outcome, message = "passed", None
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                message = (child.get("message") or child.text or "")[:500]
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        tests.append({"test": name, "outcome": outcome, "message": message,
                      "seconds": round(float(case.get("time", 0) or 0), 3)})
    return tests


def cuda_tests(deadline: Deadline) -> dict[str, Any]:
    paths = [p for p in CUDA_TEST_FILES if (ROOT / p).exists()]
    result = run_pytest(paths, CUDA_TEST_KEYWORDS, max(30.0, min(150.0, deadline.left() - 60)), ROOT)
    skipped_cuda = [t["test"] for t in result["tests"] if t["outcome"] == "skipped" and NO_CUDA in
                    (t["message"] or "")]
    result["still_skipped_for_no_cuda"] = skipped_cuda
    if skipped_cuda:
        result["status"] = "failed"
    return result


# --- hcsfs process, the command ---------------------------------------------------------------------


def process_cli(device: str, memory: str | None, work: Path) -> dict[str, Any]:
    import tifffile

    plate = work / "cli-plate"
    shutil.rmtree(work / "cli-plate", ignore_errors=True)
    shutil.rmtree(work / "cli-out", ignore_errors=True)
    plate.mkdir(parents=True)
    for index, well in enumerate(("A01", "B02")):
        dapi, gfp = nuclei_planes(100 + index, 128)
        tifffile.imwrite(plate / f"{well}_s001_w1_z001_t001.tif", dapi)
        tifffile.imwrite(plate / f"{well}_s001_w2_z001_t001.tif", gfp)
    variant = Variant("cli", device, (memory, memory, memory, memory))
    spec = work / "cli-screen.json"
    spec.write_text(json.dumps(screen_spec(variant, full=True, save=("nuclei",))))
    command = [sys.executable, "-m", "hcsfs", "process", str(plate), str(spec), "--out",
               str(work / "cli-out")]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))})
    status_file = work / "cli-out" / "status.json"
    status = json.loads(status_file.read_text()) if status_file.exists() else {}
    ok = done.returncode == 0 and status.get("state") == "done" and status.get("device") == device
    return {"status": "passed" if ok else "failed", "command": "python -m hcsfs process PLATE SPEC --out OUT",
            "device": device, "memory": memory or "numpy", "returncode": done.returncode,
            "state": status.get("state"), "ran_on": status.get("device"), "fallback": status.get("fallback"),
            "output_tail": (done.stdout + done.stderr)[-1500:]}


# --- Markdown ---------------------------------------------------------------------------------------


def render_markdown(doc: dict[str, Any]) -> str:
    s = doc["sections"]
    env = s.get("environment", {})
    device = env.get("device", {}) if isinstance(env, dict) else {}
    summary = doc.get("summary", {})
    lines = [
        "# GPU check (`make gpu-check`)", "", "## This run", "",
        f"Written by `{doc['command']}` on {doc['date']}, mode **{doc['mode']}**"
        + (f", device **{device.get('name')}** ({device.get('memory_gib')} GiB)" if device.get("name")
           else "") + ". Every figure below comes from that run (all of them are in `gpu.json` beside it).",
        "", f"Summary: **{'passed' if summary.get('passed') else 'not passed'}**"
        + (f" (failed: {', '.join(summary['failed_sections'])})" if summary.get("failed_sections") else "")
        + f", {summary.get('seconds')} s.", "",
        "| section | status | note |", "| --- | --- | --- |",
    ]
    for name in SECTIONS:
        section = s.get(name, {})
        note = section.get("reason", "")
        note = note.strip().splitlines()[-1] if note else ""
        lines.append(f"| {name} | {section.get('status')} | {_cell(note)} |")
    facts = json.dumps(_plain({k: v for k, v in env.items() if k != "status"}), indent=1)
    lines += ["", HOW.strip(), "", "## Results", "", "### environment", "", "```", facts, "```"]
    for name in ("conversions_cuda", "conversions_cpu"):
        lines += _matrix_md(name, s.get(name, {}))
    for name in ("oom_cuda", "oom_emulated"):
        lines += _oom_md(name, s.get(name, {}))
    for name in ("pipeline_cuda", "pipeline_cpu"):
        lines += _pipeline_md(name, s.get(name, {}))
    for name in ("throughput_cuda", "throughput_cpu"):
        lines += _throughput_md(name, s.get(name, {}))
    lines += _tests_md(s.get("cuda_tests", {}))
    cli = s.get("process_cli", {})
    lines += ["", "### process_cli", "", f"Status {cli.get('status')}: `{cli.get('command', '')}` on "
              f"{cli.get('device')} ({cli.get('memory')}): state {cli.get('state')}, "
              f"ran on {cli.get('ran_on')}."
              if cli.get("status") not in (None, "skipped", "pending", "error") else
              f"Status {cli.get('status')}: {_cell(cli.get('reason', ''))}"]
    return "\n".join(lines) + "\n"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _status_line(section: dict[str, Any]) -> list[str]:
    reason = section.get("reason")
    text = f"Status: **{section.get('status')}**" + (f": {_cell(reason.strip().splitlines()[-1])}"
                                                     if reason else "") + "."
    return [text, ""]


def _matrix_md(name: str, section: dict[str, Any]) -> list[str]:
    lines = ["", f"### {name}", "", *_status_line(section)]
    if not section.get("pairs"):
        return lines
    mib = next((r["timing"]["mib"] for r in section["pairs"] if r.get("timing")), "?")
    lines += ["| source | target | method (hcsfs stats) | shared memory | dtypes failing | strided view | "
              f"{mib} MiB: ms | GB/s |", "| --- | --- | --- | --- | --- | --- | ---: | ---: |"]
    for row in section["pairs"]:
        stride = row.get("strided", {})
        stride_text = stride.get("skipped") or (f"{stride.get('method')}, shared {stride.get('shared')}"
                                                + ("" if stride.get("passed") else " FAILED"))
        timing = row.get("timing", {})
        lines.append(f"| {row['source']} | {row['target']} | {row.get('method')} | {row.get('shared')} | "
                     f"{', '.join(row['failures']) or 'none'} | {_cell(stride_text)} | "
                     f"{timing.get('median_ms')} | {timing.get('gb_per_s')} |")
    lines += ["", "hcsfs's statistics over the section: " + _cell(", ".join(
        f"{k} {v}" for k, v in sorted(section.get("stats_totals", {}).items())))]
    for note in section.get("notes", []):
        lines.append(f"- note: {note}")
    for row in section["pairs"]:
        for where, case in (("", row), *((f" ({k})", c) for k, c in row.get("dtypes", {}).items())):
            if case.get("error") and not case.get("passed"):
                lines.append(f"- {row['source']} -> {row['target']}{where}: "
                             f"{_cell(case['error'].strip().splitlines()[-1])}")
    return lines


def _oom_md(name: str, section: dict[str, Any]) -> list[str]:
    lines = ["", f"### {name}", "", *_status_line(section)]
    if not section.get("cases"):
        return lines
    lines += ["| framework | case | stack | cap MiB | calls (Z, device) | counts | result | passed |",
              "| --- | --- | --- | ---: | --- | --- | --- | --- |"]
    for case in section["cases"]:
        counts = ", ".join(f"{k} {v}" for k, v in case.get("counts", {}).items() if v)
        calls = " ".join(f"{c['z']}@{c['device']}" for c in case.get("calls", []))
        result = case.get("raised") or f"{case.get('result_device')}, equal {case.get('values_equal')}"
        if case.get("error"):
            result = "error: " + case["error"].strip().splitlines()[-1]
        passed = "yes" if case["passed"] else f"no ({', '.join(case.get('mismatches', ['error']))})"
        cap = f"{case.get('cap_mib')}{' (emulated)' if case.get('emulated_cap') else ''}"
        stack = "x".join(map(str, case.get("stack", [])))
        lines.append(f"| {case['framework']} | {case['case']} | {stack} | "
                     f"{cap} | {calls} | {counts} | {_cell(result)} | {passed} |")
    return lines


def _pipeline_md(name: str, section: dict[str, Any]) -> list[str]:
    lines = ["", f"### {name}", "", *_status_line(section)]
    if not section.get("comparisons"):
        return lines
    plate = section["plate"]
    lines += [f"Plate: {plate['units']} sites x 2 channels of {plate['side']}x{plate['side']}, "
              f"{plate['workers']} workers; reference: the same spec on the CPU (numpy).", "",
              "| variant | device | smooth (rel. diff) | mask (px differing) | nuclei | cells | tables "
              "| ROI sets | passed |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in section["comparisons"]:
        out = row.get("outputs", {})

        def label_text(result: str, out: dict[str, Any] = out) -> str:
            r = out.get(result, {})
            if r.get("equal"):
                return "equal"
            return f"{r.get('differing_fraction', r.get('reason'))} differ ({r.get('rule')})"

        tables = out.get("tables", {})
        passed = "yes" if row["passed"] else "no: " + _cell(row["problems"] or "outputs differ")
        lines.append(
            f"| {row['variant']} | {row['device']} | {out.get('smooth', {}).get('worst_relative')} | "
            f"{out.get('mask', {}).get('worst_fraction')} | {_cell(label_text('nuclei'))} | "
            f"{_cell(label_text('cells'))} | {_cell(tables.get('worst_relative', tables.get('reason')))} | "
            f"{out.get('rois', {}).get('bytes_equal')} | {passed} |")
    return lines


def _throughput_md(name: str, section: dict[str, Any]) -> list[str]:
    lines = ["", f"### {name}", "", *_status_line(section)]
    if not section.get("rows"):
        return lines
    lines += ["| case | side | units | workers | variant | seconds | sites/s | site Mpx/s | "
              "speed-up over numpy |",
              "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for row in section["rows"]:
        if "error" in row:
            lines.append(f"| {row['case']} | {row['side']} | {row['units']} | {row['workers']} | "
                         f"{row['variant']} | error: {_cell(row['error'].strip().splitlines()[-1])} | | | |")
            continue
        if "skipped" in row:
            lines.append(f"| {row['case']} | {row['side']} | {row['units']} | {row['workers']} | "
                         f"{row['variant']} | skipped: {_cell(row['skipped'])} | | | |")
            continue
        if not row.get("passed"):
            lines.append(f"| {row['case']} | {row['side']} | {row['units']} | {row['workers']} | "
                         f"{row['variant']} | failed: {row.get('state')} on {row.get('ran_on')}, "
                         f"{_cell(row.get('errors'))[:300]} | | | |")
            continue
        lines.append(f"| {row['case']} | {row['side']} | {row['units']} | {row['workers']} | "
                     f"{row['variant']} | {row['seconds']} | {row['units_per_s']} | "
                     f"{row['megapixels_per_s']} | "
                     f"{row.get('ratio_vs_cpu', '')} |")
    return lines


def _tests_md(section: dict[str, Any]) -> list[str]:
    lines = ["", "### cuda_tests", "", *_status_line(section)]
    if "counts" not in section:
        return lines
    lines += [f"`{section['command']}`: " + ", ".join(f"{v} {k}" for k, v in section["counts"].items()), ""]
    for test in section["tests"]:
        if test["outcome"] != "passed":
            lines.append(f"- {test['outcome']}: `{test['test']}` {_cell(test['message'] or '')}")
    return lines


# --- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--out", type=Path, help="folder for gpu.json and gpu.md (default: docs/ on a "
                        "device, bench-out/gpu-check/ otherwise)")
    parser.add_argument("--dry-run", action="store_true", help="run only what a CPU can (the default without "
                        "a CUDA device)")
    parser.add_argument("--budget-s", type=float, default=225.0, help="stop starting timed runs after this")
    parser.add_argument("--work", type=Path, help="scratch folder for the runs (default: a temporary one)")
    parser.add_argument("--sizes", help="plane sides of the throughput runs (default 1024,2048; "
                        "dry run 64,96)")
    parser.add_argument("--units", type=int, help="units per throughput run (default 4 x workers; dry run 4)")
    parser.add_argument("--workers", type=int, help="engine workers (default: cores, at most 16; dry run 2)")
    parser.add_argument("--skip-tests", action="store_true", help="leave out the pytest child process")
    args = parser.parse_args(argv)

    use_cuda = not args.dry_run and cuda_count() > 0
    reason = NO_CUDA if cuda_count() == 0 else DRY_RUN
    out = args.out or (ROOT / "docs" if use_cuda else ROOT / "bench-out" / "gpu-check")
    report = Report(out, "device" if use_cuda else "dry-run", argv)
    deadline = Deadline(args.budget_s)
    workers = args.workers or (min(16, os.cpu_count() or 1) if use_cuda else 2)
    default_sizes = [1024, 2048] if use_cuda else [64, 96]
    sizes = [int(v) for v in args.sizes.split(",")] if args.sizes else default_sizes
    units = args.units or (max(16, 4 * workers) if use_cuda else 4)
    small = 96 if not use_cuda else 512

    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hcsfs-gpu-check-")))
        work.mkdir(parents=True, exist_ok=True)
        run_section(report, "environment", lambda: probe_environment(use_cuda))
        if use_cuda and not args.skip_tests:  # first: the most important, and it warms cupy's kernel cache
            run_section(report, "cuda_tests", lambda: cuda_tests(deadline))
        else:
            report.set("cuda_tests", skipped("--skip-tests" if use_cuda else reason))
        gpu_places = [Placement("numpy", "cpu")]
        if use_cuda:
            gpu_places.append(Placement("cupy", "cuda:0"))
            torch = _optional("torch")
            if torch is not None and torch.cuda.is_available():
                gpu_places.append(Placement("torch", "cuda:0"))
            if _jax_gpus():
                gpu_places.append(Placement("jax", "cuda:0"))
            run_section(report, "conversions_cuda", lambda: conversion_matrix(gpu_places, 64))
        else:
            report.set("conversions_cuda", skipped(reason))
        cpu_places = [Placement(k, "cpu") for k in ("numpy", "torch", "jax") if _optional(k) is not None]
        run_section(report, "conversions_cpu", lambda: conversion_matrix(cpu_places, 64 if use_cuda else 4))
        if use_cuda:
            run_section(report, "oom_cuda", oom_cuda)
        else:
            report.set("oom_cuda", skipped(reason))
        run_section(report, "oom_emulated", oom_emulated)
        if use_cuda:
            run_section(report, "pipeline_cuda", lambda: pipeline_section(
                [CUPY_VARIANT, TORCH_VARIANT], 1024, 8, workers, work / "pipeline-cuda"))
        else:
            report.set("pipeline_cuda", skipped(reason))
        run_section(report, "pipeline_cpu", lambda: pipeline_section(
            [TORCH_CPU_VARIANT], small, 4, min(workers, 4), work / "pipeline-cpu"))
        if use_cuda:
            run_section(report, "throughput_cuda", lambda: throughput_section(
                [CUPY_VARIANT, TORCH_VARIANT], sizes, units, workers, work / "throughput", deadline,
                warm_up=True))
            report.set("throughput_cpu", skipped("a device run measures the GPU against the CPU instead"))
        else:
            report.set("throughput_cuda", skipped(reason))
            run_section(report, "throughput_cpu", lambda: throughput_section(
                [TORCH_CPU_VARIANT], sizes, units, workers, work / "throughput", deadline, warm_up=False))
        run_section(report, "process_cli", lambda: process_cli(
            "cuda:0" if use_cuda else "cpu", "cupy" if use_cuda else None, work))
    loaded = [m for m in ("pyfuse3", "trio") if m in sys.modules]
    report.doc["environment_after"] = {"fuse_modules_loaded": loaded}
    report.write()
    print(f"report: {out / 'gpu.md'} and {out / 'gpu.json'}: "
          f"{'passed' if report.doc['summary']['passed'] else 'NOT passed'}", flush=True)
    return 0 if report.doc["summary"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
