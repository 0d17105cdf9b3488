"""Listings of the function registry: ``hcsfs functions [--json]``, docs/pipelines.md's library
listing (grouped by module) and the compact library part of ``.pipelines/README``.

``python -m hcsfs.pipelines.library_listing --write-docs docs/pipelines.md`` regenerates the docs;
``--excluded`` prints each library candidate left out and the rule that excludes it.
"""

from __future__ import annotations

import math
import textwrap
import time
from pathlib import Path
from typing import Any

from hcsfs.pipelines.footprints import FOOTPRINTS, Footprint
from hcsfs.pipelines.library import (
    CLE_PREFIX,
    PYTHON_MODULES,
    FootprintParam,
    LibraryFunction,
    TupleParam,
    build_stats,
    library_functions,
)
from hcsfs.pipelines.library import _lengths as _lengths
from hcsfs.pipelines.library import _num as _num
from hcsfs.pipelines.registry import REQUIRED, FunctionRegistry, Param

__all__ = ["argument_row", "function_row", "function_rows", "function_table_lines", "library_markdown",
           "readme_library_lines", "short_argument"]

_TYPE_WORDS = {int: "integer", float: "number", bool: "boolean", str: "string"}


def _json_value(value: Any) -> Any:
    if value is REQUIRED:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, Footprint):
        return {value.shape: value.sizes[0] if len(value.sizes) == 1 else list(value.sizes)}
    return value


def argument_row(param: Param) -> dict[str, Any]:
    """One argument for ``hcsfs functions --json``: name, type, default, range or choices."""
    if isinstance(param, FootprintParam):
        kind = "footprint"
    elif isinstance(param, TupleParam):
        kind = f"{_TYPE_WORDS[param.kind]} or list" if param.scalar else "list"
    else:
        kind = _TYPE_WORDS[param.kind]
    row: dict[str, Any] = {"name": param.name, "type": kind, "required": param.default is REQUIRED,
                           "default": _json_value(param.default)}
    if param.choices is not None:
        row["choices"] = list(param.choices)
    elif param.low is not None or param.high is not None:
        row["range"] = [_json_value(_int_if_whole(param.low)), _json_value(_int_if_whole(param.high))]
    if isinstance(param, TupleParam):
        row["lengths"] = list(param.lengths)
    if isinstance(param, FootprintParam):
        row["shapes"] = {name: [shape.low, shape.high] for name, shape in FOOTPRINTS.items()}
    return row


def _int_if_whole(value: float | None) -> float | int | None:
    return int(value) if value is not None and float(value).is_integer() else value


def function_row(registry: FunctionRegistry, name: str) -> dict[str, Any]:
    """One function for ``hcsfs functions --json``."""
    definition = registry.get(name)
    library = definition if isinstance(definition, LibraryFunction) else None
    per_plane = not definition.whole_stack and definition.reduces is None
    return {
        "name": name, "module": library.module if library else "builtin", "doc": definition.doc,
        "arguments": [argument_row(p) for p in definition.params],
        "inputs": [{"name": a.name, "kind": a.kind, "required": a.required} for a in definition.array_params],
        "memory_types": [m.value for m in registry.memory_types(name)],
        "installed_memory_types": [m.value for m in registry.available_memory_types(name)],
        "per_plane": per_plane, "whole_stack_allowed": bool(library and not library.planar),
        "result": definition.produces, "output": definition.output,
        "url": library.url if library else None,
    }


def function_rows(registry: FunctionRegistry) -> list[dict[str, Any]]:
    return [function_row(registry, name) for name in registry.names()]


def short_argument(param: Param) -> str:
    """``sigma=1.0 [0, 50]``, ``mode=nearest {reflect,constant,...}``, ``footprint=<required>``."""
    default = "<required>" if param.default is REQUIRED else _shown_short(param.default)
    text = f"{param.name}={default}"
    if param.choices is not None and len(param.choices) > 1:
        text += " {" + ",".join(map(str, param.choices)) + "}"
    elif param.low is not None and param.kind in (int, float) and not isinstance(param, FootprintParam):
        text += f" [{_num(param.low)}, {_num(param.high)}]"
    if isinstance(param, TupleParam):
        lengths = _lengths(param.lengths)
        text += f" (or list of {lengths})" if param.scalar else f" (list of {lengths})"
    if isinstance(param, FootprintParam):
        text += " {disk|diamond|square|rectangle|ball|octahedron|cube: size}"
    return text


def function_table_lines(registry: FunctionRegistry) -> list[str]:
    """``hcsfs functions``: one line per function (name, memory types, per plane, arguments)."""
    rows = []
    for name in registry.names():
        definition = registry.get(name)
        library = definition if isinstance(definition, LibraryFunction) else None
        if library is not None:
            plane = "always" if library.planar else "yes|stack"
        else:
            plane = "yes" if not definition.whole_stack and definition.reduces is None else "stack"
        arrays = [f"inputs.{a.name}={'<required>' if a.required else 'none'}"
                  for a in definition.array_params]
        args = ", ".join([*arrays, *(short_argument(p) for p in definition.params if p.name != "per_plane")])
        rows.append((name, ",".join(m.value for m in registry.memory_types(name)), plane, args or "-"))
    width = max(len(r[0]) for r in rows) + 2
    memory_width = max(len(r[1]) for r in rows) + 2
    lines = [f"{'NAME':<{width}}{'MEMORY':<{memory_width}}{'PER PLANE':<11}ARGUMENTS"]
    lines += [f"{n:<{width}}{m:<{memory_width}}{p:<11}{a}" for n, m, p, a in rows]
    return lines


def _shown_short(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(map(str, value)) + "]"
    return str(value)


def _group_heading(module: str) -> str:
    if module == "ndimage":
        return "ndimage (scipy.ndimage)"
    if module == CLE_PREFIX:
        return "cle (pyclesperanto)"
    return module


def _group_url(module: str) -> str:
    if module == "ndimage":
        return "https://docs.scipy.org/doc/scipy/reference/ndimage.html"
    if module == CLE_PREFIX:
        return "https://clesperanto.github.io/pyclesperanto/"
    return f"https://scikit-image.org/docs/stable/api/{module}.html"


def library_groups(registry: FunctionRegistry) -> dict[str, list[LibraryFunction]]:
    groups: dict[str, list[LibraryFunction]] = {}
    order = [*PYTHON_MODULES, CLE_PREFIX]
    for definition in library_functions(registry):
        groups.setdefault(definition.module, []).append(definition)
    return {m: groups[m] for m in order if m in groups}


def library_markdown(registry: FunctionRegistry) -> str:
    """The library listing of docs/pipelines.md, grouped by module (``--markdown`` prints it)."""
    lines: list[str] = []
    for module, definitions in library_groups(registry).items():
        lines += [f"#### {_group_heading(module)}: {len(definitions)} functions",
                  f"Reference: <{_group_url(module)}>", "",
                  "| function | arguments (`per_plane` left out) | result | memory | per plane |",
                  "| --- | --- | --- | --- | --- |"]
        for d in definitions:
            arrays = [f"`inputs: {a.name}`{'' if a.required else ' (optional)'}" for a in d.array_params]
            shown = [f"`{short_argument(p)}`" for p in d.params if p.name != "per_plane"]
            args = ", ".join([*arrays, *shown])
            memory = ", ".join(m.value for m in registry.memory_types(d.name))
            plane = "always (2-D)" if d.planar else "default (or the stack)"
            short = d.name[len(module) + 1:]
            lines.append(f"| [`{short}`]({d.url}) | {args or 'none'} | {d.produces} | {memory} | {plane} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def readme_library_lines(registry: FunctionRegistry) -> list[str]:
    """The compact library part of ``.pipelines/README``: each module's function names on a few lines."""

    lines: list[str] = []
    for module, definitions in library_groups(registry).items():
        names = ", ".join(d.name[len(module) + 1:] + ("*" if d.planar else "") for d in definitions)
        lines += textwrap.wrap(f"{module}.{{{names}}}", width=100, subsequent_indent="    ",
                               break_on_hyphens=False)
    return lines


DOCS_START = "<!-- library listing: generated by python -m hcsfs.pipelines.library_listing --write-docs -->"
DOCS_END = "<!-- end of library listing -->"


def _main(argv: list[str] | None = None) -> None:
    import argparse

    from hcsfs.pipelines.registry import default_registry

    parser = argparse.ArgumentParser(prog="python -m hcsfs.pipelines.library_listing")
    parser.add_argument("--markdown", action="store_true", help="print the docs/pipelines.md listing")
    parser.add_argument("--excluded", action="store_true", help="print the candidates left out, and why")
    parser.add_argument("--write-docs", metavar="FILE", help="replace the listing between the markers "
                                                             f"{DOCS_START!r} and {DOCS_END!r} of FILE")
    args = parser.parse_args(argv)
    registry = default_registry()
    started = time.perf_counter()
    registry.names()
    if args.write_docs:
        path = Path(args.write_docs)
        text = path.read_text(encoding="utf-8")
        head, start, rest = text.partition(DOCS_START)
        _, end, tail = rest.partition(DOCS_END)
        if not start or not end:
            raise SystemExit(f"{path}: no {DOCS_START} ... {DOCS_END} markers")
        path.write_text(f"{head}{DOCS_START}\n{library_markdown(registry)}{DOCS_END}{tail}", encoding="utf-8")
    elif args.markdown:
        print(library_markdown(registry), end="")
    elif args.excluded:
        for exclusion in build_stats().excluded:
            print(f"{exclusion.name}: {exclusion.reason}")
    else:
        seconds = time.perf_counter() - started
        print(f"{len(library_functions(registry))} library functions in {seconds:.2f} s")


if __name__ == "__main__":
    _main()
