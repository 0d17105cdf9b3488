"""The registry: explicit registration, duplicates rejected, unknown names carry the name."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from hcsfs.errors import UnknownFunctionError
from hcsfs.memory import MemoryType
from hcsfs.pipelines import FunctionDef, FunctionRegistry, Param, default_registry, function_table_markdown
from hcsfs.pipelines.builtins import BUILTINS
from hcsfs.pipelines.readme import readme_text
from hcsfs.pipelines.registry import load_plugin

ISSUE_FUNCTIONS = {"gaussian_filter", "median_filter", "tophat", "rescale_intensity", "threshold_otsu",
                   "binary_opening", "fill_holes", "label", "max_projection", "mean_projection", "clip"}


def test_builtins_cover_the_issue(registry) -> None:
    assert ISSUE_FUNCTIONS <= set(registry.names())
    for name in BUILTINS:  # library functions (cle.*) may have pyclesperanto only
        assert registry.memory_types(name.name)[0] is MemoryType.NUMPY
    assert MemoryType.TORCH in registry.memory_types("gaussian_filter")
    assert MemoryType.TORCH not in registry.memory_types("label")


def test_registries_are_independent_instances() -> None:
    a, b = default_registry(), default_registry()
    a.register(FunctionDef("extra", "an extra function"))
    assert "extra" in a and "extra" not in b


def test_duplicates_rejected() -> None:
    registry = FunctionRegistry()
    registry.register(FunctionDef("f", "f"))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(FunctionDef("f", "again"))
    registry.implement("f", "numpy", lambda s: s)
    with pytest.raises(ValueError, match="already has a numpy"):
        registry.implement("f", "numpy", lambda s: s)


def test_unknown_names_carry_the_name() -> None:
    registry = default_registry()
    with pytest.raises(UnknownFunctionError) as caught:
        registry.get("os.system")
    assert caught.value.name == "os.system" and isinstance(caught.value, KeyError)
    with pytest.raises(UnknownFunctionError) as caught:
        registry.implementation("label", "torch")
    assert caught.value.name == "label" and "torch" in str(caught.value)
    with pytest.raises(UnknownFunctionError):
        registry.implement("nope", "numpy", lambda s: s)


def test_plain_implementations_get_memory_conversion() -> None:
    registry = FunctionRegistry()
    registry.register(FunctionDef("double", "x2", (Param("k", int, 2, 1, 3),)))
    registry.implement("double", "torch", lambda stack, k: stack * k)
    out = registry.implementation("double", "torch")(np.ones((1, 2, 2), np.float32), k=3)
    assert type(out).__module__.startswith("torch") and float(out.sum()) == 12


def test_plugin_module_registers_functions() -> None:
    module = types.ModuleType("hcsfs_test_plugin")

    def register(registry: FunctionRegistry) -> None:
        registry.register(FunctionDef("invert", "invert a mask"))
        registry.implement("invert", "numpy", lambda stack: (stack == 0).astype(np.uint8))

    module.register = register  # type: ignore[attr-defined]
    sys.modules[module.__name__] = module
    try:
        registry = default_registry()
        load_plugin(registry, module.__name__)
        assert "invert" in registry
    finally:
        del sys.modules[module.__name__]


def test_markdown_and_readme_list_every_function(registry) -> None:
    table = function_table_markdown(registry)
    readme = readme_text(registry)
    for fn in BUILTINS:
        assert f"`{fn.name}`" in table and f"\n{fn.name}: " in readme
        for param in fn.params:
            assert param.describe() in readme
    assert "sigma: number in [0, 50], default 1.0" in readme
    assert "pyclesperanto" in table and "objects" in readme
