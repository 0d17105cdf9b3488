"""Progress display for long commands: a bar on a terminal, a line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType

import click

__all__ = ["Progress", "bar"]


def bar(done: int, total: int, width: int = 30) -> str:
    """``[#########.........]`` for ``done`` of ``total``."""
    filled = width if total <= 0 else min(width, round(width * done / total))
    return "[" + "#" * filled + "." * (width - filled) + "]"


class Progress:
    """``with Progress(label) as p: p.update(done, total)``."""

    def __init__(self, label: str, *, interval: float = 5.0) -> None:
        self.label = label
        self.interactive = sys.stderr.isatty()
        self.interval = interval
        self._last = 0.0
        self._shown = False

    def __enter__(self) -> Progress:
        return self

    def update(self, done: int, total: int, note: str = "") -> None:
        now = time.monotonic()
        finished = total > 0 and done >= total
        if not self.interactive and not finished and now - self._last < self.interval:
            return
        self._last = now
        text = f"{self.label} {bar(done, total)} {done}/{total} {note}".rstrip()
        if self.interactive:
            click.echo("\r" + text + "\033[K", nl=False, err=True)
            self._shown = True
        else:
            click.echo(text, err=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._shown:
            click.echo("", err=True)
