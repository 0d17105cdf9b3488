"""The unit journal (``units.jsonl``): which units of a run are complete, so an interrupted run resumes.

A unit is committed only after everything it produced is on storage: its planes (the plane journal
holds their lines, each naming the unit), its ROI sets (renamed into place), its table rows (spool
blocks flushed and fsynced); then one line naming the unit and where its rows lie is appended and
fsynced. A crash at any instant therefore leaves each unit either committed whole or not at all: a
resumed run reruns exactly the units without a line (a torn last line counts as none).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hcsfs.errors import SpecError

__all__ = ["UNITS_FILE", "UnitJournal", "append_durably", "committed_units", "spec_difference"]

UNITS_FILE = "units.jsonl"


class UnitJournal:
    """Append-only, fsynced record of committed units (one JSON object per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def commit(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            append_durably(self.path, record)

    def load(self) -> dict[str, dict[str, Any]]:
        return committed_units(self.path.parent)


def append_durably(path: Path, record: Mapping[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``path`` and fsync it (one write: a crash tears at most it)."""
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def committed_units(folder: Path) -> dict[str, dict[str, Any]]:
    """Unit label -> its commit record, from a run folder (empty when it has no journal)."""
    path = folder / UNITS_FILE
    if not path.exists():
        return {}
    records: dict[str, dict[str, Any]] = {}
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line)
            records[str(record["unit"])] = record
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a crash: that unit was not committed
    return records


def spec_difference(old: Any, new: Any, where: str = "") -> str | None:
    """The first place two spec documents differ (``steps[1].args.sigma: 2 vs 3``), ``None`` if equal.

    ``resume`` itself is not compared."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            if key == "resume" and not where:
                continue
            path = f"{where}.{key}" if where else str(key)
            if key not in old or key not in new:
                return f"{path}: {'added' if key not in old else 'removed'}"
            found = spec_difference(old[key], new[key], path)
            if found:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list):
        for i, (a, b) in enumerate(zip(old, new, strict=False)):
            found = spec_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        if len(old) != len(new):
            return f"{where}: {len(old)} entries vs {len(new)}"
        return None
    if old != new:
        return f"{where or 'spec'}: {old!r} in the interrupted run, {new!r} now"
    return None


def check_resumable(old_spec: Any, new_spec: Any, old_doc: Any, new_doc: Any) -> None:
    """:class:`SpecError` (field ``resume``) naming the difference when the specs are not the same run."""
    import dataclasses

    if dataclasses.replace(old_spec, resume=False) == dataclasses.replace(new_spec, resume=False):
        return
    difference = spec_difference(old_doc, new_doc) or next(
        (f.name for f in dataclasses.fields(old_spec)
         if f.name != "resume" and getattr(old_spec, f.name) != getattr(new_spec, f.name)), "spec")
    raise SpecError("resume", f"not the interrupted run's spec: {difference}")
