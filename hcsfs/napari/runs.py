"""Where a pipeline run's outputs are, and what they hold right now (no napari, no Qt).

Two kinds of run folder:

- in a mount, ``/<mount>/<name>/``: one folder of planes per saved result (``<result>/<plane>.tif``;
  a version-1 run has its planes in the run folder itself) and complete tables (``<table>.csv``); its
  live status is ``/<mount>/.pipelines/<name>.status``;
- on disk (``hcsfs process --out DIR``, or a mount's outputs folder): ``planes.jsonl``, ``data/``,
  ``tables/``, read with :func:`hcsfs.pipelines.outputs.load_output`; its status is ``status.json``.

:meth:`RunFolder.signature` is cheap (one small file read) so a follower can ask it every second;
:meth:`RunFolder.snapshot` lists the outputs and is called only when the signature changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hcsfs.napari.plate import FlatFolder, is_mount_root

if TYPE_CHECKING:
    from hcsfs.sources.base import PlateSource

__all__ = ["RunFolder", "RunSnapshot", "find_run", "is_run_folder", "mount_runs"]

FINAL_STATES = frozenset({"done", "failed", "cancelled"})
_NOT_RESULTS = frozenset({"rois", "heatmaps", "tables", "data", "spec"})
CENTER_COLUMNS = (("AreaShape_Center_Y", "AreaShape_Center_X"), ("centroid_y", "centroid_x"))
"""(y, x) column pairs a table may place its objects with: analysis tables, then version-1 ``objects``."""


@dataclass
class RunSnapshot:
    """A run's outputs at one moment: saved results (name -> source of its planes) and tables."""

    name: str
    results: dict[str, PlateSource] = field(default_factory=dict)
    tables: dict[str, Path] = field(default_factory=dict)
    status: dict[str, Any] | None = None

    @property
    def state(self) -> str | None:
        return None if self.status is None else str(self.status.get("state"))

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


class RunFolder:
    """One run, in a mount (``mount`` set) or in a folder on disk."""

    def __init__(self, name: str, folder: Path, *, mount: Path | None = None,
                 plate: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.folder = folder
        self.mount = mount
        self._plate = dict(plate or {})
        """The mount's plate.json (channel names and pixel size for result planes)."""

    @classmethod
    def in_mount(cls, mount: Path, name: str) -> RunFolder:
        plate = _read_json(mount / ".hcsfs" / "plate.json")
        return cls(name, mount / name, mount=mount, plate=plate)

    @property
    def status_file(self) -> Path:
        if self.mount is not None:
            return self.mount / ".pipelines" / f"{self.name}.status"
        return self.folder / "status.json"

    def status(self) -> dict[str, Any] | None:
        return _read_json(self.status_file)

    def signature(self) -> tuple[Any, ...]:
        """Changes whenever new outputs may have appeared (state, units done, planes published)."""
        status = self.status()
        head = () if status is None else (status.get("state"), status.get("done"), status.get("planes"))
        if self.mount is not None:
            return head
        try:
            journal = (self.folder / "planes.jsonl").stat()
            written = (journal.st_size, journal.st_mtime_ns)
        except OSError:
            written = (0, 0)
        return (*head, *written)

    def snapshot(self) -> RunSnapshot:
        status = self.status()
        snap = RunSnapshot(self.name, status=status)
        if not self.folder.is_dir():
            return snap
        if self.mount is None:
            return self._disk_snapshot(snap)
        direct = FlatFolder(self.folder, self._plate)
        if direct.keys():
            snap.results[self.name] = direct  # a version-1 run: planes in the run folder itself
        with os.scandir(self.folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.name.startswith("."):
                    continue
                if entry.is_dir() and entry.name not in _NOT_RESULTS:
                    result = FlatFolder(Path(entry.path), self._plate)
                    if result.keys():
                        snap.results[entry.name] = result
                elif entry.name.endswith(".csv"):
                    snap.tables[entry.name] = Path(entry.path)
        return snap

    def _disk_snapshot(self, snap: RunSnapshot) -> RunSnapshot:
        from hcsfs.pipelines.outputs import load_output

        names = {int(c["index"]): c["name"] for c in self._plate.get("channels", [])
                 if isinstance(c.get("index"), int) and c.get("name")}
        output = load_output(self.folder, self.name, pixel_size_um=self._plate.get("pixel_size_um"),
                             channel_names=names)
        if output.source is not None and len(output.source.keys()):
            snap.results[self.name] = output.source
        for result, plate in sorted(output.results().items()):
            if len(plate.keys()):
                snap.results[result] = plate
        snap.tables = {n: p for n, p in output.tables().items() if n.endswith(".csv")}
        return snap


def is_run_folder(path: Path) -> bool:
    """A run folder on disk (``planes.jsonl``, or ``status.json`` beside ``spec/``)."""
    if (path / "planes.jsonl").is_file():
        return True
    return (path / "status.json").is_file() and (path / "spec").is_dir()


def mount_runs(mount: Path) -> list[str]:
    """Names of the runs a mount shows (``.pipelines/<name>.status``), sorted."""
    folder = mount / ".pipelines"
    try:
        return sorted(p.name[: -len(".status")] for p in folder.iterdir() if p.name.endswith(".status"))
    except OSError:
        return []


def find_run(path: Path) -> RunFolder | None:
    """The run whose folder ``path`` is: in a mount (its parent is a mount root) or on disk."""
    parent = path.parent
    if is_mount_root(parent) and path.name in mount_runs(parent):
        return RunFolder.in_mount(parent, path.name)
    if is_run_folder(path):
        status = _read_json(path / "status.json") or {}
        return RunFolder(str(status.get("name") or path.name), path)
    return None
