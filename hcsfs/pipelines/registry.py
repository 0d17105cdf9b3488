"""The function registry: what a spec's ``func:`` may name, its arguments and its implementations.

A :class:`FunctionRegistry` is an instance passed around (the manager owns one), filled by explicit
:meth:`FunctionRegistry.register` and :meth:`FunctionRegistry.implement` calls you can grep for
(:func:`hcsfs.pipelines.builtins.register_builtins`). Duplicates are rejected; unknown names raise
:class:`~hcsfs.errors.UnknownFunctionError` carrying the name. Registering an implementation imports
nothing: frameworks are imported when a run needs them.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from hcsfs.errors import SpecError, UnknownFunctionError
from hcsfs.memory import MemoryType, memory_spec, memory_types

__all__ = [
    "REQUIRED",
    "ArrayParam",
    "FunctionDef",
    "RESULT_KINDS",
    "FunctionRegistry",
    "Param",
    "TableDef",
    "TableFunc",
    "default_registry",
    "function_table_markdown",
    "load_plugin",
    "load_plugins",
]

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "required"})()
"""Default of a parameter that has none: the spec must give it."""

TableFunc = Callable[[np.ndarray, np.ndarray], list[tuple[int, dict[str, Any]]]]
"""``(step output [Z, Y, X], intensity [Z, Y, X]) -> [(z index, row), ...]`` on host arrays."""


@dataclass(frozen=True, slots=True)
class TableDef:
    """A special output a function can write: ``tables: [name]`` in a step asks for it."""

    columns: tuple[str, ...]
    """Columns after the plane's ``well, site, channel, z, t``; rows carry exactly these."""
    func: TableFunc
    doc: str

# The Python module each memory type needs (checked without importing it).
_FRAMEWORK_MODULE = {
    MemoryType.NUMPY: "numpy", MemoryType.CUPY: "cupy", MemoryType.TORCH: "torch",
    MemoryType.JAX: "jax", MemoryType.TENSORFLOW: "tensorflow",
    MemoryType.PYCLESPERANTO: "pyclesperanto",
}
_TYPE_NAMES = {int: "integer", float: "number", bool: "boolean", str: "string"}


@dataclass(frozen=True, slots=True)
class Param:
    """One argument of a pipeline function, with its type and sane range.

    Ranges are part of the security model: a hostile spec must not be able to ask for a kernel that
    takes hours or a histogram that exhausts memory.
    """

    name: str
    kind: type
    default: Any = REQUIRED
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def check(self, value: Any, where: str) -> Any:
        """``value`` converted to this parameter's type, or :class:`SpecError` naming ``where``."""
        kind: Any = self.kind
        value = cast(Any, value)
        if isinstance(value, bool) and kind is not bool:
            raise SpecError(where, f"must be a {_TYPE_NAMES[kind]}, not a boolean")
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind):
            raise SpecError(where, f"must be a {_TYPE_NAMES[kind]}, not {type(value).__name__}")
        if kind is float and not math.isfinite(cast(float, value)):
            raise SpecError(where, f"must be a finite number, not {value}")
        number = cast(float, value)
        if self.low is not None and number < self.low:
            raise SpecError(where, f"{value} is below the minimum {self.low:g}")
        if self.high is not None and number > self.high:
            raise SpecError(where, f"{value} is above the maximum {self.high:g}")
        if self.choices is not None and value not in self.choices:
            raise SpecError(where, f"{value!r} is not one of {', '.join(map(repr, self.choices))}")
        return value

    def describe(self) -> str:
        """``sigma: number in [0, 50], default 1`` (for the README and the docs)."""
        text = f"{self.name}: {_TYPE_NAMES[self.kind]}"
        if self.choices is not None:
            text += f" in {{{', '.join(map(str, self.choices))}}}"
        elif self.low is not None or self.high is not None:
            text += f" in [{_num(self.low)}, {_num(self.high)}]"
        text += ", required" if self.default is REQUIRED else f", default {self.default}"
        return text


def _num(value: float | None) -> str:
    return "-inf" if value is None else f"{value:g}"


RESULT_KINDS = ("image", "mask", "labels")
"""What a step's result is: intensities, a 0/1 mask, or ``int32`` object labels (0: background)."""


@dataclass(frozen=True, slots=True)
class ArrayParam:
    """An array argument besides the main input (watershed's ``markers``), given by a spec's
    ``inputs: {markers: nuclei}``. Implementations receive it as a keyword argument, as a ``[Z, Y, X]``
    stack converted to their own memory type."""

    name: str
    kind: str | None = None
    """The result kind it must be (one of :data:`RESULT_KINDS`), ``None``: any."""
    required: bool = True
    doc: str = ""


@dataclass(frozen=True)
class FunctionDef:
    """A pipeline function: its arguments, what it does to the stack and which tables it can write.

    ``reduces`` is the reduction's name (``"max"``) when the function collapses the stacked axis to one
    plane; output plane names then carry it (``zmax``). ``whole_stack`` marks functions whose result
    depends on the whole ``[Z, Y, X]`` stack (an Otsu threshold over all planes): out-of-memory
    recovery must not split them.
    """

    name: str
    doc: str
    params: tuple[Param, ...] = ()
    reduces: str | None = None
    whole_stack: bool = False
    output: str = "float32"
    """What the output is, in words, for the docs (``uint8 mask``, ``int32 labels``)."""
    tables: Mapping[str, TableDef] = field(default_factory=dict)
    check: Callable[[dict[str, Any], str], None] | None = None
    """Checks between arguments (``low < high``): raises :class:`SpecError` naming the field."""
    accepts: frozenset[str] | None = None
    """Result kinds the main input may be (:data:`RESULT_KINDS`); ``None``: any."""
    produces: str = "image"
    """The kind of its result: ``image``, ``mask``, ``labels``, or ``same`` (the main input's kind)."""
    array_params: tuple[ArrayParam, ...] = ()
    """Array arguments besides the main input (mapped by a spec's ``inputs:``)."""
    input_name: str = "image"
    """The main input's name, which ``inputs:`` may also use instead of ``input:``."""
    kind_of: Callable[[Mapping[str, Any]], str] | None = None
    """The result kind from the step's arguments, where they decide it (``model``'s ``output``)."""
    prefer: tuple[MemoryType, ...] = ()
    """Memory types a spec that names none gets first, when installed (default: numpy first)."""

    def result_kind(self, input_kind: str, args: Mapping[str, Any]) -> str:
        """The kind of this function's result for a main input of ``input_kind`` and these arguments."""
        if self.kind_of is not None:
            return self.kind_of(args)
        return input_kind if self.produces == "same" else self.produces

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def array_param(self, name: str) -> ArrayParam | None:
        return next((p for p in self.array_params if p.name == name), None)


class FunctionRegistry:
    """Pipeline functions by name, each with implementations per memory type."""

    def __init__(self) -> None:
        self._functions: dict[str, FunctionDef] = {}
        self._impls: dict[str, dict[MemoryType, Callable[..., Any]]] = {}
        self._lock = threading.Lock()
        self.plugins: list[str] = []
        """Plugin modules loaded into this registry, in order (Dask workers load the same ones)."""
        self.models_dir: Path | None = None
        """The trusted folder ``func: model`` reads (the mount's ``--models``; ``models.use_models``)."""
        self._loaders: list[Callable[[FunctionRegistry], None]] = []
        self._load_lock = threading.RLock()

    def add_loader(self, loader: Callable[[FunctionRegistry], None]) -> None:
        """Register more functions on first use: ``loader(registry)`` runs once, the first time a name is
        not found or the names are listed (the function library is added so: mounting stays fast)."""
        with self._load_lock:
            self._loaders.append(loader)

    def _load(self) -> None:
        with self._load_lock:  # a second thread waits here until the first has registered everything
            while self._loaders:
                self._loaders.pop(0)(self)

    def register(self, definition: FunctionDef) -> None:
        """Add a function; a name registered twice is an error."""
        with self._lock:
            if definition.name in self._functions:
                raise ValueError(f"pipeline function {definition.name!r} is already registered")
            self._functions[definition.name] = definition
            self._impls[definition.name] = {}

    def implement(self, name: str, memory_type: MemoryType | str, func: Callable[..., Any]) -> None:
        """Add ``name``'s implementation for ``memory_type``: ``func(stack [Z, Y, X], **args)``.

        A function not decorated with :mod:`hcsfs.memory`'s decorators is wrapped by
        ``memory_types(memory_type)``, so it always receives a stack of its own memory type.
        """
        memory_type = MemoryType(memory_type)
        if memory_spec(func) is None:
            func = memory_types(memory_type)(func)
        with self._lock:
            impls = self._impls.get(name)
            if impls is None:
                raise UnknownFunctionError(name, f"register {name!r} before its implementations")
            if memory_type in impls:
                raise ValueError(f"{name!r} already has a {memory_type.value} implementation")
            impls[memory_type] = func

    def get(self, name: str) -> FunctionDef:
        definition = self._functions.get(name)
        if definition is None:
            self._load()
            definition = self._functions.get(name)
        if definition is None:
            raise UnknownFunctionError(name)
        return definition

    def __contains__(self, name: object) -> bool:
        if name not in self._functions:
            self._load()
        return name in self._functions

    def names(self) -> list[str]:
        self._load()
        return sorted(self._functions)

    def memory_types(self, name: str) -> list[MemoryType]:
        """The memory types ``name`` is implemented for (installed or not), numpy first."""
        self.get(name)
        return sorted(self._impls[name], key=list(MemoryType).index)

    def available_memory_types(self, name: str) -> list[MemoryType]:
        """The memory types of ``name`` whose framework is installed here, the default first."""
        prefer = self.get(name).prefer
        rank = {m: i for i, m in enumerate(prefer)}
        ordered = sorted(self.memory_types(name), key=lambda m: rank.get(m, len(prefer)))
        return [m for m in ordered if framework_installed(m)]

    def implementation(self, name: str, memory_type: MemoryType | str) -> Callable[..., Any]:
        memory_type = MemoryType(memory_type)
        impl = self._impls.get(name, {}).get(memory_type)
        if impl is None:
            self.get(name)  # loads the library if the name is in it
            impl = self._impls.get(name, {}).get(memory_type)
        if impl is None:
            raise UnknownFunctionError(name, f"{name!r} has no {memory_type.value} implementation")
        return impl


def framework_installed(memory_type: MemoryType) -> bool:
    return importlib.util.find_spec(_FRAMEWORK_MODULE[memory_type]) is not None


def default_registry() -> FunctionRegistry:
    """A new registry holding hcsfs's built-in functions, and the function library on first use
    (:mod:`hcsfs.pipelines.library`: scikit-image, scipy.ndimage and clEsperanto by name)."""
    from hcsfs.pipelines.builtins import register_builtins
    from hcsfs.pipelines.library import register_library

    registry = FunctionRegistry()
    register_builtins(registry)
    registry.add_loader(register_library)
    return registry


def function_table_markdown(registry: FunctionRegistry | None = None) -> str:
    """A Markdown table of the registry's functions (docs/pipelines.md and ``.pipelines/README``); the
    library functions are listed by :func:`hcsfs.pipelines.library_listing.library_markdown`."""
    from hcsfs.pipelines.library import is_library

    registry = registry or default_registry()
    lines = ["| function | what it does | input | arguments | output | memory types | tables |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in registry.names():
        fn = registry.get(name)
        if is_library(fn):
            continue
        arrays = [f"{a.name}: {a.kind or 'any'} result (`inputs:`), "
                  f"{'required' if a.required else 'optional'}" for a in fn.array_params]
        args = "<br>".join([*arrays, *(p.describe() for p in fn.params)]) or "none"
        types = ", ".join(m.value for m in registry.memory_types(name))
        tables = "<br>".join(f"`{t}`: {d.doc}" for t, d in fn.tables.items())
        accepts = " or ".join(sorted(fn.accepts)) if fn.accepts else "any"
        lines.append(f"| `{name}` | {fn.doc} | {accepts} | {args} | {fn.output} | {types} | {tables} |")
    return "\n".join(lines)


def load_plugin(registry: FunctionRegistry, module_name: str) -> None:
    """Import ``module_name`` and call its ``register(registry)`` (the mount's ``--plugins`` option).

    This runs the module's code with the mount owner's rights: only the owner names plugins, on the
    command line, never a spec. Plugin functions go through the same registry rules as built-ins.
    """
    import importlib

    module = importlib.import_module(module_name)
    register = getattr(module, "register", None)
    if not callable(register):
        raise UnknownFunctionError(module_name, f"plugin module {module_name!r} has no register(registry)")
    register(registry)
    registry.plugins.append(module_name)


def load_plugins(registry: FunctionRegistry, module_names: Iterable[str]) -> None:
    """:func:`load_plugin` for each module, in order."""
    for name in module_names:
        load_plugin(registry, name)
