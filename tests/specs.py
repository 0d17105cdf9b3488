"""Specs the tests share: the screen analysis is contrib/screen.yaml (the one users copy)."""

from __future__ import annotations

from pathlib import Path

SCREEN_FILE = Path(__file__).resolve().parents[1] / "contrib" / "screen.yaml"


def screen_spec(*extra: str) -> str:
    """contrib/screen.yaml without its comment lines, with ``extra`` top-level lines appended."""
    lines = [line for line in SCREEN_FILE.read_text().splitlines() if line and not line.startswith("#")]
    return "\n".join([*lines, *extra]) + "\n"
