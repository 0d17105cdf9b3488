"""Errors raised by :mod:`hcsfs.memory` (the project's root error lives in :mod:`hcsfs.errors`)."""

from __future__ import annotations

from typing import Any

from hcsfs.errors import HcsfsError


def _name(value: Any) -> str:
    return str(getattr(value, "value", value))


class MemoryConversionError(HcsfsError, TypeError):
    """An array could not be detected, converted or placed as asked.

    Raised by :func:`~hcsfs.memory.convert` and everything built on it. ``source`` and ``target`` are
    memory types (or a type name for an undetectable object), ``method`` names the path that failed
    (``dlpack``, ``host_round_trip``, ``detect``, ``placement``, ...), ``reason`` says why.
    """

    def __init__(self, source: Any, target: Any, method: str, reason: str) -> None:
        super().__init__(source, target, method, reason)
        self.source = source
        self.target = target
        self.method = method
        self.reason = reason

    def __str__(self) -> str:
        return f"{_name(self.source)} -> {_name(self.target)} ({self.method}): {self.reason}"


class DimensionalityError(HcsfsError, ValueError):
    """An array crossing a 3-D boundary (stacking, a decorated function) has the wrong dimensions.

    Differs from :class:`MemoryConversionError`: the conversion itself would work, but the caller broke
    the ``[Z, Y, X]`` discipline of DESIGN.md section 3.
    """


class FrameworkUnavailableError(HcsfsError, ImportError):
    """A framework cannot be used in this process: not installed, or loaded in an order known to crash.

    Raised by :func:`~hcsfs.memory.import_framework` before the import is attempted when it would
    crash the interpreter (TensorFlow loaded before pyclesperanto on PoCL, see docs/memory.md).
    """


class OutOfMemoryRecoveryError(HcsfsError, MemoryError):
    """Out-of-memory recovery was tried and failed: cleanup, splitting and CPU fallback all ran out.

    ``__cause__`` is the last framework out-of-memory error.
    """
