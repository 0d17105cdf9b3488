"""Illumination (flat-field) correction: profiles fitted from a sample of the selected planes, applied
to every plane a unit reads, before its first step.

A spec's ``illumination: {method: median|basic, sample: 200}`` makes the run fit, before any unit runs,
one flat-field per channel (and, for BaSiC, a dark-field) from ``sample`` planes of that channel spread
evenly over the selection (every k-th plane in the plate's natural order: deterministic). Each unit's
planes are then corrected as ``(raw - dark) / flat`` in float32, with ``flat`` normalized to mean 1, so
corrected intensities keep the scale of the raw ones. The profiles are saved as
``/<name>/illumination/w<c>_flatfield.tif`` (and ``w<c>_darkfield.tif``), float32 TIFFs at the planes' size.

- ``median``: the per-pixel median over the sampled planes (objects that cover a pixel in fewer than half
  of the planes drop out), smoothed with a Gaussian, normalized. No dark-field: a camera offset stays in
  the planes (it is divided by the flat-field like the signal).
- ``basic``: BaSiC (Peng et al., Nat. Commun. 2017) through ``basicpy`` (``pip install
  'hcsfs[illumination]'``), which models each plane as ``baseline x flat + dark``; ``darkfield: false``
  fits the flat-field only. It runs through torch, on the run's CUDA device when there is one.

Profiles are fitted at a working resolution (block means of at most :data:`WORKING_SIZE` pixels a side,
fewer for samples so large that the working stack would exceed :data:`MAX_WORKING_VALUES`: the profiles
are smooth, and 200 planes of 1024x1024 would otherwise need 800 MB) and interpolated back to the
planes' size bilinearly. Flat-field values are kept at or above :data:`MIN_FLAT` (a corner the
optics leave black would otherwise divide by zero).
"""

from __future__ import annotations

import importlib.util
import io
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hcsfs.errors import SpecError
from hcsfs.naming import PlaneKey, sort_key

__all__ = ["IlluminationSpec", "Profile", "METHODS", "basicpy_installed", "correct_stacks", "fit_profile",
           "fit_run_profiles", "parse_illumination", "profile_files", "read_profiles", "sample_keys",
           "selected_planes", "working_size", "write_profiles"]

METHODS = ("median", "basic")
DEFAULT_SAMPLE = 200
MIN_SAMPLE, MAX_SAMPLE = 10, 5000
WORKING_SIZE = {"median": 256, "basic": 128}
"""The largest side of the grid each method fits on (BaSiC's own default working size is 128)."""
MAX_WORKING_VALUES = 32 * 1024 * 1024
"""At most this many float32 values (128 MB) in a fit's working stack: 5000 planes fit on 80x80."""
SMOOTH_FRACTION = 1 / 64
"""The median method's Gaussian sigma, as a fraction of the working grid's larger side."""
MIN_FLAT = 0.01
FOLDER = "illumination"
_FIELDS = ("method", "sample", "darkfield")
_BASIC_LOCK = threading.Lock()
"""One BaSiC fit at a time (it changes torch's thread count while it runs)."""


@dataclass(frozen=True, slots=True)
class IlluminationSpec:
    """The spec's ``illumination:`` mapping, checked."""

    method: str = "median"
    sample: int = DEFAULT_SAMPLE
    darkfield: bool = False
    """BaSiC only: fit a dark-field too (the default with ``method: basic``)."""


@dataclass(frozen=True, slots=True, eq=False)
class Profile:
    """One channel's fitted profiles at the planes' size: ``flat`` (mean 1) and ``dark`` (or ``None``)."""

    channel: Any
    flat: np.ndarray
    dark: np.ndarray | None = None
    planes: int = 0
    """How many planes it was fitted from."""

    @property
    def name(self) -> str:
        return f"w{self.channel}"

    def file_names(self) -> list[str]:
        """``w1_flatfield.tif`` (and ``w1_darkfield.tif``): its files under ``illumination/``."""
        kinds = ("flatfield", "darkfield") if self.dark is not None else ("flatfield",)
        return [f"{self.name}_{kind}.tif" for kind in kinds]


def basicpy_installed() -> bool:
    return importlib.util.find_spec("basicpy") is not None


def parse_illumination(value: Any) -> IlluminationSpec:
    """The ``illumination`` field; every problem is a :class:`SpecError` naming its sub-field."""
    if not isinstance(value, dict):
        raise SpecError("illumination", f"must be a mapping like {{method: median, sample: 200}}, not "
                                        f"{type(value).__name__}")
    for key in value:
        if key not in _FIELDS:
            shown = key[:50] if key.isidentifier() else repr(key[:50])
            raise SpecError(f"illumination.{shown}", f"unknown field (allowed: {', '.join(_FIELDS)})")
    method = value.get("method", "median")
    if method not in METHODS:
        raise SpecError("illumination.method", f"{method!r} is not one of {', '.join(METHODS)}")
    if method == "basic" and not basicpy_installed():
        raise SpecError("illumination.method", "basic needs basicpy (pip install 'hcsfs[illumination]'); "
                                               "method: median needs nothing more")
    sample = value.get("sample", DEFAULT_SAMPLE)
    if isinstance(sample, bool) or not isinstance(sample, int):
        raise SpecError("illumination.sample", f"must be an integer number of planes, not {sample!r}")
    if not MIN_SAMPLE <= sample <= MAX_SAMPLE:
        raise SpecError("illumination.sample", f"{sample} is not in [{MIN_SAMPLE}, {MAX_SAMPLE}]")
    darkfield = value.get("darkfield", method == "basic")
    if not isinstance(darkfield, bool):
        raise SpecError("illumination.darkfield", f"must be true or false, not {darkfield!r}")
    if darkfield and method != "basic":
        raise SpecError("illumination.darkfield", "only method: basic fits a dark-field")
    return IlluminationSpec(str(method), sample, darkfield)


# --- which planes ------------------------------------------------------------------------------------

def selected_planes(units: Iterable[Any]) -> dict[Any, list[PlaneKey]]:
    """Channel -> the planes the units read of it, in the plate's natural order (each once)."""
    by_channel: dict[Any, dict[PlaneKey, None]] = {}
    for unit in units:
        for _, keys in unit.stacks:
            for key in keys:
                by_channel.setdefault(key.channel, {})[key] = None
    ordered = sorted(by_channel, key=lambda c: (isinstance(c, str), c if isinstance(c, int) else 0, str(c)))
    return {channel: sorted(by_channel[channel], key=sort_key) for channel in ordered}


def sample_keys(keys: Sequence[PlaneKey], sample: int) -> list[PlaneKey]:
    """``sample`` of ``keys`` spread evenly over them (all of them when there are no more)."""
    if len(keys) <= sample:
        return list(keys)
    return [keys[(i * len(keys)) // sample] for i in range(sample)]


# --- fitting -------------------------------------------------------------------------------------------

def _factor(shape: tuple[int, int], working: int) -> int:
    return max(1, math.ceil(max(shape) / working))


def _shrink(plane: np.ndarray, factor: int) -> np.ndarray:
    """Block means of ``factor x factor`` pixels (the last blocks padded with the edge), float32."""
    plane = np.asarray(plane)
    if factor == 1:
        return plane.astype(np.float32)
    rows, cols = plane.shape
    pad = (-rows % factor, -cols % factor)
    if any(pad):
        plane = np.pad(plane, ((0, pad[0]), (0, pad[1])), mode="edge")
    rows, cols = plane.shape[0] // factor, plane.shape[1] // factor
    # two contiguous sums (rows of blocks, then blocks), exact in uint64 for integer planes: 2.5x faster
    # than one float mean over axes (1, 3)
    exact = np.uint64 if plane.dtype.kind in "ub" else np.int64 if plane.dtype.kind == "i" else np.float64
    strips = plane.reshape(rows, factor, plane.shape[1]).sum(axis=1, dtype=exact)
    blocks = strips.reshape(rows, cols, factor).sum(axis=2)
    return (blocks / (factor * factor)).astype(np.float32)


def _interpolation(size: int, factor: int, low: int) -> np.ndarray:
    """The ``[size, low]`` matrix of linear weights from block centres back to pixels (extrapolated
    linearly over the half block outside the first and last centres)."""
    if low == 1:
        return np.ones((size, 1))
    coordinate = (np.arange(size) + 0.5) / factor - 0.5
    first = np.clip(np.floor(coordinate).astype(int), 0, low - 2)
    second = first + 1
    weight = coordinate - first
    matrix = np.zeros((size, low))
    np.add.at(matrix, (np.arange(size), first), 1 - weight)
    np.add.at(matrix, (np.arange(size), second), weight)
    return matrix


def _grow(low: np.ndarray, shape: tuple[int, int], factor: int) -> np.ndarray:
    if factor == 1:
        return low.astype(np.float64)
    rows = _interpolation(shape[0], factor, low.shape[0])
    cols = _interpolation(shape[1], factor, low.shape[1])
    return np.asarray(rows @ low.astype(np.float64) @ cols.T)


def _smooth(low: np.ndarray) -> np.ndarray:
    """A Gaussian over the working grid; the border is extended point-symmetrically (odd reflection), so
    the profile's slope at the edge survives the smoothing."""
    from scipy import ndimage

    sigma = max(1.0, max(low.shape) * SMOOTH_FRACTION)
    pad = min(int(4 * sigma) + 1, min(low.shape) - 1)
    if pad < 1:
        return np.asarray(ndimage.gaussian_filter(low.astype(np.float64), sigma, mode="nearest"))
    padded = np.pad(low.astype(np.float64), pad, mode="reflect", reflect_type="odd")
    return np.asarray(ndimage.gaussian_filter(padded, sigma, mode="nearest")[pad:-pad, pad:-pad])


def _normalized(flat: np.ndarray, what: str) -> np.ndarray:
    mean = float(np.mean(flat))
    if not np.isfinite(mean) or mean <= 0:
        raise ValueError(f"{what}: the sampled planes give no positive flat-field (mean {mean:g})")
    flat = np.maximum(flat / mean, MIN_FLAT)
    return (flat / flat.mean()).astype(np.float32)


def working_size(method: str, planes: int) -> int:
    """The working grid's largest side for ``planes`` planes: :data:`WORKING_SIZE`, smaller when the
    sample is so large that the grid would hold more than :data:`MAX_WORKING_VALUES` values."""
    return min(WORKING_SIZE[method], max(32, math.isqrt(MAX_WORKING_VALUES // max(1, planes))))


def fit_profile(planes: Iterable[np.ndarray], method: str = "median", *, darkfield: bool = False,
                channel: Any = 1, device: str = "cpu", count: int | None = None,
                cancelled: Callable[[], bool] = lambda: False) -> Profile | None:
    """One channel's profiles from its sampled planes (read one at a time); ``None`` when cancelled.
    ``count``: how many planes there will be (for the working grid; default: ``len(planes)``)."""
    what = f"w{channel}"
    if count is None:
        count = len(planes) if isinstance(planes, Sequence) else DEFAULT_SAMPLE
    shape: tuple[int, int] | None = None
    factor = 1
    low: list[np.ndarray] = []
    for plane in planes:
        if cancelled():
            return None
        plane = np.asarray(plane)
        if plane.ndim != 2:
            raise ValueError(f"{what}: a plane of shape {plane.shape} is not 2-D")
        if shape is None:
            shape = (int(plane.shape[0]), int(plane.shape[1]))
            factor = _factor(shape, working_size(method, count))
        elif plane.shape != shape:
            raise ValueError(f"{what}: the sampled planes differ in shape ({shape} and {plane.shape})")
        low.append(_shrink(plane, factor))
    if shape is None:
        raise ValueError(f"{what}: no plane to fit from")
    stack = np.stack(low)
    del low
    dark: np.ndarray | None = None
    if method == "median":
        means = stack.mean(axis=(1, 2), dtype=np.float64)
        usable = means > 0  # an all-black plane says nothing about the illumination
        if not usable.any():
            raise ValueError(f"{what}: every sampled plane is black")
        if not usable.all():
            stack, means = stack[usable], means[usable]
        stack /= means[:, None, None].astype(np.float32)  # planes brighter than others do not outvote them
        flat_low = _smooth(np.median(stack, axis=0, overwrite_input=True))
        dark_low = None
    else:
        flat_low, dark_low = _fit_basic(stack, darkfield, device)
    flat = _normalized(_grow(flat_low, shape, factor), what)
    if dark_low is not None:
        dark = _grow(dark_low, shape, factor).astype(np.float32)
    return Profile(channel, flat, dark, planes=int(stack.shape[0]))


def _fit_basic(stack: np.ndarray, darkfield: bool, device: str) -> tuple[np.ndarray, np.ndarray | None]:
    import logging
    import warnings

    warnings.filterwarnings("ignore", message="get_darkfield=True", category=UserWarning)
    logging.getLogger("basicpy").setLevel(logging.WARNING)
    import torch
    from basicpy import BaSiC

    # working_size: our grid (basicpy's None is broken in 2.0.0); the resize to it is then the identity.
    model = BaSiC(get_darkfield=darkfield, working_size=list(stack.shape[1:]), device=device)
    with _BASIC_LOCK:
        # On the CPU one torch thread: the arrays are small (at most 5000 x 128 x 128), and torch's
        # threads spin when the cores are busy (units of other runs): 3.4 s with one, 13.7 s with two
        # on a loaded 2-core machine. Other torch users run single-threaded meanwhile, never wrongly.
        threads = torch.get_num_threads()
        if not device.startswith("cuda"):
            torch.set_num_threads(1)
        try:
            model.fit(stack, skip_shape_warning=True)
        finally:
            torch.set_num_threads(threads)
    flat = np.asarray(model.flatfield, dtype=np.float64)
    dark = np.asarray(model.darkfield, dtype=np.float64) if darkfield else None
    if not np.all(np.isfinite(flat)) or (dark is not None and not np.all(np.isfinite(dark))):
        raise ValueError("BaSiC did not converge (non-finite profiles)")
    return flat, dark


def torch_device(spec_device: str) -> str:
    """Where BaSiC runs for a spec's ``device``: its CUDA device if there is one, else the CPU."""
    if spec_device == "cpu":
        return "cpu"
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver is "no device", as for the steps
        count = 0
    index = 0 if spec_device == "auto" else int(spec_device.partition(":")[2])
    return f"cuda:{index}" if index < count else "cpu"


def fit_run_profiles(spec: IlluminationSpec, source: Any, units: Iterable[Any], *, device: str = "cpu",
                     cancelled: Callable[[], bool] = lambda: False,
                     log: Callable[[str], None] = lambda line: None) -> dict[Any, Profile] | None:
    """Every selected channel's profiles, from ``spec.sample`` planes each read from ``source``.

    A plane that cannot be read is left out (and logged); a channel of which fewer than half the
    sampled planes could be read fails the fit (:class:`SpecError`, field ``illumination``), as does
    anything else that stops a fit. ``None`` when cancelled.
    """
    profiles: dict[Any, Profile] = {}
    where = "cpu" if spec.method == "median" else torch_device(device)
    for channel, keys in selected_planes(units).items():
        chosen = sample_keys(keys, spec.sample)
        skipped: list[str] = []

        def planes(chosen: list[PlaneKey] = chosen, skipped: list[str] = skipped) -> Iterable[np.ndarray]:
            for key in chosen:
                try:
                    plane = np.asarray(source.read_plane(key))
                except Exception as exc:  # one unreadable plane: fit from the others
                    skipped.append(f"{key.name}: {type(exc).__name__}: {exc}")
                    continue
                yield plane

        started = time.perf_counter()
        problem: Exception | None = None
        profile: Profile | None = None
        try:
            profile = fit_profile(planes(), spec.method, darkfield=spec.darkfield, channel=channel,
                                  device=where, count=len(chosen), cancelled=cancelled)
        except Exception as exc:  # noqa: BLE001 - any failure of a fit fails the run, saying why
            problem = exc
        if profile is None and problem is None:
            return None
        if len(skipped) * 2 > len(chosen):
            problem = ValueError(f"w{channel}: {len(skipped)} of {len(chosen)} sampled planes could not be "
                                 f"read ({skipped[0]})")
        if problem is not None or profile is None:
            message = f"cannot fit the {spec.method} flat-field: {problem}"
            raise SpecError("illumination", message) from problem
        for line in skipped[:5]:
            log(f"illumination: skipped {line}")
        dark = " and dark-field" if profile.dark is not None else ""
        log(f"illumination: {spec.method} flat-field{dark} of w{channel} from {profile.planes} of "
            f"{len(keys)} planes in {time.perf_counter() - started:.1f} s on {where} (flat-field "
            f"{float(profile.flat.min()):.3f}..{float(profile.flat.max()):.3f})")
        profiles[channel] = profile
    return profiles


# --- applying and saving ---------------------------------------------------------------------------

def correct_stacks(stacks: Mapping[str, np.ndarray], unit: Any, profiles: Mapping[Any, Profile]
                   ) -> dict[str, np.ndarray]:
    """Each ``[Z, Y, X]`` stack of a unit corrected plane by plane with its channel's profiles:
    ``(raw - dark) / flat`` in float32."""
    corrected = {}
    for name, stack in stacks.items():
        keys = unit.stack_keys(name)
        out = np.empty(stack.shape, dtype=np.float32)
        for i, key in enumerate(keys):
            profile = profiles.get(key.channel)
            if profile is None:
                raise ValueError(f"{key.name}: no illumination profile for channel w{key.channel}")
            if profile.flat.shape != stack.shape[1:]:
                raise ValueError(f"{key.name}: a {stack.shape[1]}x{stack.shape[2]} plane, but the "
                                 f"illumination profile of w{key.channel} is "
                                 f"{profile.flat.shape[0]}x{profile.flat.shape[1]}")
            plane = out[i]
            plane[...] = stack[i]
            if profile.dark is not None:
                plane -= profile.dark
            plane /= profile.flat
        corrected[name] = out
    return corrected


def profile_files(profile: Profile) -> list[tuple[str, bytes]]:
    """``(file name, float32 TIFF bytes)`` of a channel's profiles."""
    import tifffile

    files = []
    for name, array in zip(profile.file_names(), (profile.flat, profile.dark), strict=False):
        assert array is not None
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, np.ascontiguousarray(array, dtype=np.float32),
                         description=f"hcsfs illumination {name.removesuffix('.tif')} from "
                                     f"{profile.planes} planes")
        files.append((name, buffer.getvalue()))
    return files


def write_profiles(profiles: Mapping[Any, Profile], folder: Path) -> list[tuple[str, Path]]:
    """Save every profile under ``folder`` (created); ``(file name, path)`` of each file written."""
    from hcsfs.pipelines.outputs import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for profile in profiles.values():
        for name, data in profile_files(profile):
            write_atomic(folder / name, data)
            written.append((name, folder / name))
    return written


def read_profiles(folder: Path, channels: Iterable[Any], spec: IlluminationSpec) -> dict[Any, Profile] | None:
    """The profiles an earlier run of the same spec saved under ``folder`` (resuming a run: its units must
    be corrected as the finished ones were); ``None`` if any file is missing or unreadable."""
    import tifffile

    profiles = {}
    for channel in channels:
        try:
            flat = np.asarray(tifffile.imread(folder / f"w{channel}_flatfield.tif"), dtype=np.float32)
            dark = (np.asarray(tifffile.imread(folder / f"w{channel}_darkfield.tif"), dtype=np.float32)
                    if spec.darkfield else None)
        except (OSError, ValueError):
            return None
        if flat.ndim != 2 or (dark is not None and dark.shape != flat.shape):
            return None
        profiles[channel] = Profile(channel, flat, dark)
    return profiles
