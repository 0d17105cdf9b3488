"""The function library: registered from its modules, every function checked against the library itself.

Generated per registered function (tests/pipelines/library_cases.py): called through the registry on a
small ``[2, 32, 32]`` stack of the kind its documentation names, the result has the stack's shape, the
documented dtype, is the function applied to each plane (and, where ``per_plane: false`` is offered, to
the whole stack), and equals scikit-image / scipy / clEsperanto called directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from hcsfs.errors import SpecError
from hcsfs.memory import MemoryType
from hcsfs.pipelines import default_registry, parse_spec
from hcsfs.pipelines.footprints import FOOTPRINTS, Footprint, build_footprint
from hcsfs.pipelines.library import PYTHON_MODULES, FootprintParam, TupleParam, build_stats, library_functions
from hcsfs.pipelines.library_listing import library_markdown
from hcsfs.pipelines.registry import function_table_markdown
from tests.pipelines.library_cases import (
    FUNCTIONS,
    NAMES,
    REGISTRY,
    STACK,
    WHOLE,
    expected,
    expected_cle,
    footprint_array,
    inputs_for,
    run_registry,
    runnable_inputs,
)

PYTHON_NAMES = [n for n in NAMES if FUNCTIONS[n].library != "cle"]
CLE_NAMES = [n for n in NAMES if FUNCTIONS[n].library == "cle"]
STACK_NAMES = [n for n in PYTHON_NAMES if not FUNCTIONS[n].planar]


def _cuda() -> bool:
    from hcsfs.memory.backends import cuda_device_count

    try:
        return cuda_device_count() > 0
    except Exception:
        return False


# --- the registry -------------------------------------------------------------------------------


def test_at_least_150_functions_from_every_allowlisted_module() -> None:
    assert len(NAMES) >= 150
    python_only = [n for n in NAMES if FUNCTIONS[n].library != "cle"]
    assert len(python_only) >= 150, "scikit-image and scipy alone (no clEsperanto) give 150 functions"
    for prefix in PYTHON_MODULES:
        assert any(FUNCTIONS[n].module == prefix for n in NAMES), prefix
    for name in ("skimage.filters.gaussian", "skimage.filters.sobel", "skimage.morphology.white_tophat",
                 "skimage.filters.threshold_otsu", "skimage.measure.label",
                 "skimage.morphology.remove_small_objects",
                 "ndimage.median_filter", "ndimage.gaussian_filter", "cle.top_hat_box", "cle.gaussian_blur"):
        assert name in FUNCTIONS, name


def test_names_are_module_paths_and_builtins_stay() -> None:
    for name, definition in FUNCTIONS.items():
        module, _, attr = definition.target.partition(":")
        prefix = name.rsplit(".", 1)[0]
        assert prefix == definition.module and name.endswith("." + attr)
        assert PYTHON_MODULES.get(prefix, "pyclesperanto") == module
    for builtin in ("gaussian_filter", "threshold_otsu", "label", "median_filter", "watershed"):
        assert builtin in REGISTRY and builtin not in FUNCTIONS


def test_registry_builds_on_first_use() -> None:
    code = ("import time, sys; t = time.perf_counter(); from hcsfs.pipelines import default_registry;"
            "r = default_registry(); a = time.perf_counter() - t; heavy = [m for m in ('skimage.filters',"
            "'skimage.morphology', 'pyclesperanto', 'cupy', 'torch') if m in sys.modules];"
            "assert 'gaussian_filter' in r; assert not [m for m in ('skimage.morphology', 'pyclesperanto')"
            " if m in sys.modules], heavy; t = time.perf_counter(); n = len(r.names());"
            "print(a, time.perf_counter() - t, n,"
            "      [m for m in ('pyclesperanto', 'cupy', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True)
    before, build, count, frameworks = out.stdout.split(maxsplit=3)
    assert int(count) >= 150 + 11
    assert frameworks.strip() == "[]", "building the library imports no GPU framework (clEsperanto is read)"
    print(f"registry: builtins {float(before):.2f} s, library build {float(build):.2f} s, {count} functions")


def test_exclusions_have_rules_not_names() -> None:
    excluded = build_stats().excluded
    assert excluded and all(e.reason for e in excluded)
    reasons = {e.name: e.reason for e in excluded}
    assert "callable" in reasons["ndimage.generic_filter"]
    assert "callable" in reasons["skimage.restoration.cycle_spin"]
    assert "image" in reasons["skimage.measure.regionprops"]
    assert "shape" in reasons["cle.maximum_z_projection"]
    assert "ndimage.zoom" in reasons and "ndimage.rotate" in reasons


def test_arguments_are_typed_and_bounded() -> None:
    for definition in FUNCTIONS.values():
        assert definition.params[-1].name == "per_plane"
        for param in definition.params:
            if param.kind in (int, float) and param.choices is None:
                assert param.low is not None and param.high is not None, (definition.name, param.name)
                assert param.high <= 1e9 or param.name in {"rng", "random_state", "seed"}
                assert param.choices or param.high - param.low < 1e10
            assert param.kind in (int, float, bool, str, dict), (definition.name, param.name, param.kind)
    gaussian = FUNCTIONS["skimage.filters.gaussian"]
    sigma = gaussian.param("sigma")
    assert isinstance(sigma, TupleParam) and sigma.high == 50 and sigma.default == 1.0
    assert gaussian.param("mode").choices == ("reflect", "constant", "nearest", "mirror", "wrap")
    assert gaussian.param("channel_axis") is None and gaussian.param("out") is None
    assert isinstance(FUNCTIONS["skimage.morphology.white_tophat"].param("footprint"), FootprintParam)
    assert FUNCTIONS["skimage.restoration.denoise_nl_means"].param("patch_distance").high == 20
    assert FUNCTIONS["skimage.filters.threshold_multiotsu"].param("classes").high == 5
    assert FUNCTIONS["ndimage.median_filter"].param("size").default == 3
    assert FUNCTIONS["skimage.filters.rank.mean"].param("footprint").default is not None  # required
    assert FUNCTIONS["cle.top_hat_box"].param("radius_x").high == 50


def test_result_kinds() -> None:
    kinds = {n: d.produces for n, d in FUNCTIONS.items()}
    assert kinds["skimage.filters.threshold_otsu"] == "mask"
    assert kinds["skimage.measure.label"] == "labels" and kinds["ndimage.label"] == "labels"
    assert kinds["skimage.segmentation.watershed"] == "labels"
    assert kinds["skimage.filters.gaussian"] == "image"
    assert kinds["skimage.morphology.remove_small_objects"] == "same"
    assert kinds["cle.voronoi_otsu_labeling"] == "labels" and kinds["cle.threshold_otsu"] == "mask"
    assert FUNCTIONS["skimage.filters.gabor"].planar and not FUNCTIONS["skimage.filters.gaussian"].planar


def test_footprints_equal_scikit_image() -> None:
    for shape, spec in FOOTPRINTS.items():
        for size in {spec.low if spec.low else 1, 2, 3, spec.high}:
            sizes = (size, size + 1) if spec.sizes == 2 else (size,)
            value = Footprint(shape, sizes)
            assert np.array_equal(build_footprint(value), footprint_array(value)), (shape, sizes)
    assert max(build_footprint(Footprint(s, (v.high,) * v.sizes)).size for s, v in FOOTPRINTS.items()
               if v.ndim == 2) <= 2601


# --- generated: every function against the library --------------------------------------------


@pytest.mark.parametrize("name", PYTHON_NAMES)
def test_function_per_plane(name: str) -> None:
    definition = FUNCTIONS[name]
    image, arrays = runnable_inputs(definition, STACK, 2)
    out = run_registry(definition, MemoryType.NUMPY, image, arrays, per_plane=True)
    assert out.shape == STACK
    planes = [expected(definition, image[z], {k: v[z] for k, v in arrays.items()}, 2)
              for z in range(STACK[0])]
    want = np.stack(planes)
    assert out.dtype == want.dtype, f"{out.dtype} != {want.dtype}"
    np.testing.assert_array_equal(out, want)
    _kind_holds(definition.produces, out, image)


@pytest.mark.parametrize("name", STACK_NAMES)
def test_function_whole_stack(name: str) -> None:
    definition = FUNCTIONS[name]
    image, arrays = runnable_inputs(definition, WHOLE, 3)
    out = run_registry(definition, MemoryType.NUMPY, image, arrays, per_plane=False)
    want = expected(definition, image, arrays, 3)
    assert out.shape == WHOLE and out.dtype == want.dtype
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("name", CLE_NAMES)
def test_cle_function(name: str) -> None:
    definition = FUNCTIONS[name]
    image, arrays = inputs_for(definition)
    out = run_registry(definition, MemoryType.PYCLESPERANTO, image, arrays, per_plane=True)
    assert out.shape == STACK
    want = np.stack([expected_cle(definition, image[z], {k: v[z] for k, v in arrays.items()}, 2)
                     for z in range(STACK[0])])
    assert out.dtype == want.dtype
    np.testing.assert_array_equal(out, want)
    image, arrays = inputs_for(definition, WHOLE)
    whole = run_registry(definition, MemoryType.PYCLESPERANTO, image, arrays, per_plane=False)
    np.testing.assert_array_equal(whole, expected_cle(definition, image, arrays, 3))


def _kind_holds(kind: str, out: np.ndarray, image: np.ndarray) -> None:
    if kind == "mask":
        assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1}
    elif kind == "labels":
        assert out.dtype == np.int32
    elif kind == "same":
        assert out.dtype == image.dtype or out.dtype == np.uint8


TWIN_NAMES = [n for n in PYTHON_NAMES if MemoryType.CUPY in REGISTRY.memory_types(n)]


@pytest.mark.parametrize("name", TWIN_NAMES or ["none"])
def test_gpu_twin(name: str) -> None:
    if not _cuda():
        pytest.skip("no CUDA device")
    import cupy

    definition = FUNCTIONS[name]
    image, arrays = inputs_for(definition)
    out = run_registry(definition, MemoryType.CUPY, image, arrays, per_plane=True)
    twin = dict(definition.twins)["cupy"]
    module, _, attr = twin.partition(":")
    import importlib

    func = getattr(importlib.import_module(module), attr)
    from tests.pipelines.library_cases import direct_kwargs, dtype_rule

    kwargs = {k: cupy.asarray(v) if isinstance(v, np.ndarray) else v
              for k, v in direct_kwargs(definition, 2).items()}
    planes = []
    for z in range(STACK[0]):
        data = cupy.asarray(image[z])
        if definition.binary_input and data.dtype in (cupy.uint8, cupy.bool_):
            data = data.astype(bool)
        result = func(data, **kwargs, **{k: cupy.asarray(v[z]) for k, v in arrays.items()})
        result = result[0] if isinstance(result, tuple) else result
        if definition.result == "threshold":
            result = data > result
        planes.append(dtype_rule(cupy.asnumpy(result), definition.produces))
    np.testing.assert_array_equal(out, np.stack(planes))


def test_twins_are_found_without_importing() -> None:
    twins = {n: dict(FUNCTIONS[n].twins) for n in TWIN_NAMES}
    if importlib_util_find("cupy"):
        assert twins.get("ndimage.gaussian_filter", {}).get("cupy") == "cupyx.scipy.ndimage:gaussian_filter"
        assert "ndimage.median_filter" in twins
    if not importlib_util_find("cucim"):
        assert not any(FUNCTIONS[n].library == "skimage" for n in TWIN_NAMES)


def importlib_util_find(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# --- specs ----------------------------------------------------------------------------------------


def _spec(steps: str) -> bytes:
    return f"steps:\n{steps}".encode()


def test_spec_with_library_functions_and_footprints() -> None:
    spec = parse_spec("edges.yaml", _spec(
        "  - {func: skimage.filters.sobel}\n"
        "  - {func: skimage.morphology.white_tophat, args: {footprint: {disk: 5}}}\n"
        "  - {func: cle.gaussian_blur, args: {sigma_x: 2, sigma_y: 2}}\n"
        "  - {func: ndimage.median_filter, args: {size: [3, 5], per_plane: true}}\n"), REGISTRY)
    tophat = spec.steps[1].kwargs
    assert tophat["footprint"] == Footprint("disk", (5,)) and tophat["per_plane"] is True
    assert spec.steps[2].memory is MemoryType.PYCLESPERANTO and spec.steps[2].kwargs["sigma_x"] == 2.0
    assert spec.steps[3].kwargs["size"] == (3, 5)
    parse_spec("a.yaml", _spec("  - {func: skimage.morphology.dilation, args: {footprint: {ball: 2}, "
                               "per_plane: false}}\n"), REGISTRY)
    parse_spec("a.yaml", _spec("  - {func: skimage.filters.rank.mean, "
                               "args: {footprint: {rectangle: [3, 5]}}}\n"), REGISTRY)


@pytest.mark.parametrize(("step", "field", "message"), [
    ("{func: skimage.morphology.white_tophat, args: {footprint: {disk: 500}}}",
     "steps[0].args.footprint.disk", "not in [0, 25]"),
    ("{func: skimage.morphology.white_tophat, args: {footprint: {hexagon: 3}}}",
     "steps[0].args.footprint.hexagon", "unknown footprint shape"),
    ("{func: skimage.morphology.white_tophat, args: {footprint: [[1, 1]]}}", "steps[0].args.footprint",
     "one shape and its size"),
    ("{func: skimage.morphology.white_tophat, args: {footprint: {ball: 2}}}", "steps[0].args.footprint",
     "needs per_plane: false"),
    ("{func: skimage.filters.rank.mean, args: {footprint: {rectangle: 3}}}",
     "steps[0].args.footprint.rectangle", "takes 2 integers"),
    ("{func: skimage.filters.rank.mean}", "steps[0].args.footprint", "required"),
    ("{func: skimage.filters.gaussian, args: {sigma: 1e12}}", "steps[0].args.sigma", "above the maximum 50"),
    ("{func: skimage.filters.gaussian, args: {sigma: [1, 2, 3, 4]}}", "steps[0].args.sigma", "not 4"),
    ("{func: skimage.filters.gaussian, args: {sigma: [1, x]}}", "steps[0].args.sigma[1]", "must be a number"),
    ("{func: skimage.filters.gaussian, args: {mode: evil}}", "steps[0].args.mode", "is not one of"),
    ("{func: skimage.filters.gaussian, args: {channel_axis: 0}}", "steps[0].args.channel_axis",
     "has no argument"),
    ("{func: skimage.filters.gaussian, args: {out: x}}", "steps[0].args.out", "has no argument"),
    ("{func: skimage.filters.gabor, args: {frequency: 0.5, per_plane: false}}", "steps[0].args.per_plane",
     "is not one of True"),
    ("{func: skimage.restoration.denoise_nl_means, args: {patch_distance: 1000}}",
     "steps[0].args.patch_distance", "above the maximum 20"),
    ("{func: skimage.io.imread}", "steps[0].func", "unknown function"),
    ("{func: ndimage.generic_filter}", "steps[0].func", "unknown function"),
    ("{func: cle.maximum_z_projection}", "steps[0].func", "unknown function"),
    ("{func: skimage.filters.threshold_multiotsu, args: {classes: 9}}", "steps[0].args.classes", "maximum 5"),
])
def test_bad_library_arguments_name_their_field(step: str, field: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec("bad.yaml", _spec(f"  - {step}\n"), REGISTRY)
    assert caught.value.field == field and message in str(caught.value), str(caught.value)


def test_library_steps_in_an_analysis_spec() -> None:
    spec = parse_spec("screen.yaml", (
        b"channels: {DAPI: 1}\nsteps:\n"
        b"  - {func: skimage.filters.gaussian, input: DAPI, args: {sigma: 2}, as: smooth}\n"
        b"  - {func: skimage.filters.threshold_otsu, input: smooth, as: mask}\n"
        b"  - {func: skimage.measure.label, input: mask, as: nuclei}\n"
        b"  - {func: skimage.segmentation.watershed, input: smooth, inputs: {markers: nuclei, mask: mask},"
        b" as: cells}\n"
        b"  - {func: skimage.morphology.remove_small_objects, input: cells, args: {max_size: 10}, as: kept}\n"
        b"  - {measure: [shape], objects: kept}\n"), REGISTRY)
    assert [s.func for s in spec.steps][-1] == "skimage.morphology.remove_small_objects"


# --- listing: CLI and docs -----------------------------------------------------------------------


def test_functions_command_json_lists_every_function() -> None:
    out = subprocess.run([sys.executable, "-m", "hcsfs", "functions", "--json"], capture_output=True,
                         text=True, timeout=180, check=True)
    rows = json.loads(out.stdout)
    assert len(rows) >= 150
    by_name = {r["name"]: r for r in rows}
    gaussian = by_name["skimage.filters.gaussian"]
    assert gaussian["per_plane"] is True and "numpy" in gaussian["memory_types"]
    sigma = next(a for a in gaussian["arguments"] if a["name"] == "sigma")
    assert sigma["type"] == "number or list" and sigma["default"] == 1.0 and sigma["range"] == [0, 50]
    assert by_name["gaussian_filter"]["module"] == "builtin"
    assert by_name["cle.top_hat_box"]["memory_types"] == ["pyclesperanto"]


def test_functions_command_table() -> None:
    out = subprocess.run([sys.executable, "-m", "hcsfs", "functions"], capture_output=True, text=True,
                         timeout=180, check=True)
    lines = out.stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "ARGUMENTS", "MEMORY", "PER", "PLANE"] or "NAME" in lines[0]
    assert any(line.startswith("skimage.filters.gaussian ") for line in lines)
    assert any("sigma=1.0 [0, 50]" in line for line in lines)
    assert len(lines) > 150


def test_docs_listing_is_generated_from_the_registry() -> None:
    from pathlib import Path

    docs = (Path(__file__).parents[2] / "docs" / "pipelines.md").read_text()
    assert library_markdown(REGISTRY) in docs, "docs/pipelines.md: regenerate the library listing " \
        "(python -m hcsfs.pipelines.library_listing --write-docs docs/pipelines.md)"
    assert "`skimage.filters.gaussian`" not in function_table_markdown(REGISTRY)  # built-ins table only


def test_readme_lists_library_compactly() -> None:
    from hcsfs.pipelines.readme import readme_text

    readme = readme_text(REGISTRY)
    assert "skimage.filters.{" in readme and "gaussian" in readme and "top_hat_box" in readme
    assert len(readme.encode()) < 64 * 1024
    assert "gaussian_filter: " in readme  # built-ins keep their full entries


def test_registry_build_time_is_reported() -> None:
    registry = default_registry()
    started = time.perf_counter()
    registry.names()
    assert time.perf_counter() - started < 5  # introspection is cached per process
    assert len(library_functions(registry)) == len(NAMES)


def test_gpu_twins_chosen_by_device_or_memory_and_fallback_reported() -> None:
    from hcsfs.pipelines.runner import resolve_device

    spec = parse_spec("gpu.yaml", b"device: cuda:0\nsteps:\n"
                                  b"  - {func: skimage.filters.rank.mean, args: {footprint: {disk: 2}}}\n"
                                  b"  - {func: skimage.filters.sobel, memory: cupy}\n", REGISTRY)
    assert [s.memory for s in spec.steps] == [MemoryType.NUMPY, MemoryType.NUMPY]
    assert "skimage.filters.rank.mean has no GPU implementation" in spec.steps[0].fallback
    assert "skimage.filters.sobel has no cupy implementation" in spec.steps[1].fallback
    _, _, fallback = resolve_device(spec)
    assert "rank.mean" in fallback and "sobel" in fallback
    if MemoryType.CUPY in REGISTRY.available_memory_types("ndimage.gaussian_filter"):
        spec = parse_spec("gpu.yaml", b"device: cuda:0\nsteps:\n  - {func: ndimage.gaussian_filter, "
                                      b"args: {sigma: 2}}\n", REGISTRY)
        assert spec.steps[0].memory is MemoryType.CUPY and spec.steps[0].fallback is None
    cpu = parse_spec("cpu.yaml", b"steps:\n  - {func: ndimage.gaussian_filter, args: {sigma: 2}}\n", REGISTRY)
    assert cpu.steps[0].memory is MemoryType.NUMPY and resolve_device(cpu)[2] is None


def test_hostile_arguments_are_rejected_naming_their_field_or_bounded() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    value = st.recursive(scalar | st.sampled_from([1e12, -1e12, 10**12, "1e12", float("nan"), float("inf")]),
                         lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
                             st.sampled_from([*FOOTPRINTS, "x", ""]), inner, max_size=2), max_leaves=8)

    @settings(max_examples=400, deadline=None)
    @given(data=st.data(), name=st.sampled_from(NAMES), raw=value)
    def check(data, name: str, raw) -> None:
        definition = FUNCTIONS[name]
        key = data.draw(st.sampled_from([p.name for p in definition.params]))
        doc = {"steps": [{"func": name, "args": {key: raw}}]}
        try:
            spec = parse_spec("fuzz.json", json.dumps(doc).encode(), REGISTRY)
        except SpecError as exc:
            assert exc.field.startswith("steps[0]"), exc.field
            return
        accepted = spec.steps[0].kwargs[key]
        param = definition.param(key)
        for item in accepted if isinstance(accepted, tuple) else (accepted,):
            if isinstance(item, int | float) and not isinstance(item, bool) and param.low is not None:
                assert param.low <= item <= param.high
        if isinstance(accepted, Footprint):
            assert build_footprint(accepted).size <= 21**3

    check()
