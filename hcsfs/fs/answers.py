"""How the virtual tree says "this answer needs I/O": it returns :class:`Blocking` work instead.

Every request the tree serves returns either its answer, computed without blocking, or a
:class:`Blocking` that holds the work still to do. The FUSE adapter runs that work in a worker thread
(behind the I/O or the CPU limiter) so the trio loop never waits on a disk or a decoder; tests and
other callers without an event loop call :func:`now`. The tree alone decides what may block, since it
knows which sources declare their metadata already read (``info_ready``) or their planes in memory.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, Union

__all__ = ["Answer", "Blocking", "Refusal", "now", "then"]

T = TypeVar("T")
U = TypeVar("U")


class Refusal(OSError):
    """An expected "no" with its errno (no such name, read-only, not a directory): the adapter answers
    it without logging, unlike an error met while serving."""

    def __init__(self, code: int, what: str = "") -> None:
        super().__init__(code, what or os.strerror(code))


@dataclass(frozen=True, slots=True)
class Blocking(Generic[T]):
    """Work that may block; ``cpu``: it decodes or encodes (the CPU limiter) rather than waits on I/O."""

    work: Callable[[], T]
    cpu: bool = False


Answer = Union[T, Blocking[T]]  # noqa: UP007 (a generic alias: the | form cannot take a TypeVar here)


def now(answer: Answer[T]) -> T:
    """The answer, doing any blocking work in this thread (for callers without an event loop)."""
    return answer.work() if isinstance(answer, Blocking) else answer


def then(answer: Answer[T], after: Callable[[T], U]) -> Answer[U]:
    """``after`` applied to the answer: at once if it is known, else after the blocking work (in the
    same worker thread). ``after`` itself must not block."""
    if isinstance(answer, Blocking):
        work = answer.work
        return Blocking(lambda: after(work()), answer.cpu)
    return after(answer)
