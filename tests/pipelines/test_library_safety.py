"""Safety proven, not assumed: every library function called under an audit hook.

``sys.addaudithook`` sees every file open, socket, subprocess, ``os.system``/``exec*``/``spawn``, code
``exec``/``compile`` and import in this process. While a registered function runs on a small stack, the
hook fails the call on any of them, and on the import of a module not imported before the call. The
function's own code and the modules it imports when called (found in its source by
``hcsfs.pipelines.library._call_imports``, imported by :func:`hcsfs.pipelines.library.prepare` as a run
does before the first call) are loaded first; nothing else may be. Functions are left out of the
registry by the rules in :mod:`hcsfs.pipelines.library` (callables, files, non-image arrays, optional
dependencies that are not installed, state kept between calls), never by name: this test has no list
of exceptions.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
import pytest

from hcsfs.memory import MemoryType
from hcsfs.pipelines.library import prepare
from tests.pipelines.library_cases import (
    FUNCTIONS,
    NAMES,
    REGISTRY,
    STACK,
    inputs_for,
    spec_args,
)

FORBIDDEN_PREFIXES = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "ctypes.dlopen")
FORBIDDEN = frozenset({"open", "os.system", "os.fork", "os.forkpty", "pty.spawn", "exec", "compile",
                       "shutil.copyfile", "shutil.rmtree", "os.remove", "os.rename", "os.mkdir",
                       "urllib.Request", "webbrowser.open"})


class _Guard:
    """An audit hook that is armed only around one call (hooks cannot be removed once added)."""

    def __init__(self) -> None:
        self.armed = False
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.armed:
            return
        if event == "import":
            module = args[0]
            if module in sys.modules:
                return
            self._trip(event, str(module))
        if event in FORBIDDEN or event.startswith(FORBIDDEN_PREFIXES):
            self._trip(event, repr(args)[:200])

    def _trip(self, event: str, detail: str) -> None:
        with self.lock:
            self.events.append((event, detail))
        raise RuntimeError(f"audit: {event} {detail} during a library call")


GUARD = _Guard()
sys.addaudithook(GUARD)


def _memory(name: str) -> MemoryType:
    return MemoryType.PYCLESPERANTO if FUNCTIONS[name].library == "cle" else MemoryType.NUMPY


def test_the_hook_catches_what_it_must() -> None:
    import importlib

    for action in (lambda: open("/etc/hostname").close(), lambda: __import__("socket").socket(),
                   lambda: importlib.import_module("this"), lambda: exec("1"),
                   lambda: __import__("subprocess").run(["true"])):
        GUARD.armed, GUARD.events = True, []
        try:
            with pytest.raises(RuntimeError, match="audit"):
                action()
        finally:
            GUARD.armed = False
        assert GUARD.events
    sys.modules.pop("this", None)


def _call_guarded(name: str) -> dict[str, Any]:
    """Call ``name`` through the registry with the hook armed: the events it tripped, its error."""
    definition = FUNCTIONS[name]
    memory = _memory(name)
    impl = REGISTRY.implementation(name, memory)
    prepare(definition, memory)  # the function's module and its call-time imports, as a run loads them
    dtypes = [definition.sample_dtype] if memory is MemoryType.PYCLESPERANTO else \
        [definition.sample_dtype, "uint16" if definition.sample_dtype == "float32" else "float32"]
    error = None
    for dtype in dtypes:  # the library may refuse one dtype (watershed_ift wants integers): the other
        image, arrays = inputs_for(definition, STACK, dtype)
        args = spec_args(definition, 2, True)
        GUARD.events = []
        GUARD.armed = True
        try:
            out = impl(image, **arrays, **args)
            if memory is MemoryType.PYCLESPERANTO:
                out = __import__("pyclesperanto").pull(out)
            error = None if np.asarray(out).shape == STACK else f"shape {np.asarray(out).shape}"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            GUARD.armed = False
        if GUARD.events or error is None:
            break
    return {"events": GUARD.events, "error": error}


def _child() -> None:
    """Run in a fresh interpreter: no other test has called the functions (or imported their modules)."""
    import json

    print(json.dumps({name: _call_guarded(name) for name in NAMES}))


@pytest.fixture(scope="module")
def audit() -> dict[str, dict[str, Any]]:
    import json
    import subprocess
    from pathlib import Path

    root = Path(__file__).parents[2]
    code = "from tests.pipelines.test_library_safety import _child; _child()"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_function_was_called(audit: dict[str, dict[str, Any]]) -> None:
    assert sorted(audit) == NAMES and len(NAMES) >= 150


@pytest.mark.parametrize("name", NAMES)
def test_library_function_does_no_io_and_imports_nothing(name: str, audit: dict[str, dict[str, Any]]) -> None:
    result = audit[name]
    assert not result["events"], f"{name} during its first call: {result['events']}"
    assert result["error"] is None, f"{name}: {result['error']}"
