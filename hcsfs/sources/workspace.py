"""The virtual workspace shared by instrument sources: flat name → the instrument's own TIFF file.

An instrument source (ImageXpress, Phenix) reads its plate's layout once at open time and fills a
:class:`WorkspaceBuilder`; the frozen :class:`Workspace` it builds is a dict from :class:`PlaneKey` to
a path relative to the plate, kept in memory only. Nothing is ever written into the source plate.
:class:`PassthroughSource` serves a workspace: ``info`` is one dict lookup plus one ``stat``, planes are
passed through byte for byte, and the pixel size is read from one plane's header, once, when asked.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hcsfs.errors import PlaneGoneError, PlaneNotFoundError, PlaneReadError, PlateCollisionError
from hcsfs.naming import PlaneKey, sort_key
from hcsfs.sources.base import PlaneInfo, PlateDescription, SourceDefaults
from hcsfs.sources.tiffprobe import probe_channel_name, read_tiff_format, read_tiff_plane

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PassthroughSource", "Workspace", "WorkspaceBuilder"]

log = logging.getLogger(__name__)

_LOGGED_PER_REASON = 5  # names logged at WARNING per skip reason; the rest go to DEBUG


@dataclass(frozen=True, slots=True)
class Workspace:
    """The mapping of one plate: flat keys to real relative paths, plus what was left out."""

    root: Path
    planes: dict[PlaneKey, str]
    keys: list[PlaneKey]
    skipped: list[dict[str, str]]
    missing: list[dict[str, str]]


@dataclass(slots=True)
class WorkspaceBuilder:
    """Collects plane → file pairs and refuses two files for one flat name."""

    root: Path
    planes: dict[PlaneKey, str] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    missing: list[dict[str, str]] = field(default_factory=list)

    def add(self, key: PlaneKey, relpath: str) -> None:
        previous = self.planes.setdefault(key, relpath)
        if previous != relpath:
            raise PlateCollisionError(
                f"{self.root}: two files map to {key.name}: {previous!r} and {relpath!r}"
            )

    def skip(self, relpath: str, reason: str) -> None:
        self.skipped.append({"path": relpath, "reason": reason})

    def miss(self, key: PlaneKey, relpath: str) -> None:
        self.missing.append({"name": key.name, "path": relpath})

    def build(self) -> Workspace:
        self._log_skipped()
        keys = sorted(self.planes, key=_fast_sort_key(self.planes))
        self.missing.sort(key=lambda m: m["name"])
        self.skipped.sort(key=lambda s: s["path"])  # scandir order differs between filesystems
        return Workspace(self.root, self.planes, keys, self.skipped, self.missing)

    def _log_skipped(self) -> None:
        # One line per reason at WARNING (a plate can hold 100,000 thumbnails); every name at DEBUG.
        counts = Counter(entry["reason"] for entry in self.skipped)
        shown: Counter[str] = Counter()
        for entry in self.skipped:
            reason = entry["reason"]
            shown[reason] += 1
            level = logging.DEBUG if shown[reason] > _LOGGED_PER_REASON else logging.INFO
            log.log(level, "%s: left out %s: %s", self.root, entry["path"], reason)
        for reason, count in counts.items():
            log.warning("%s: left out %d entries: %s", self.root, count, reason)
        if self.missing:
            log.warning(
                "%s: %d planes promised by the plate's metadata are missing (first: %s)",
                self.root, len(self.missing), self.missing[0]["path"],
            )


def _axis_order(value: int | str) -> tuple[int, int, str]:
    return (0, value, "") if isinstance(value, int) else (1, 0, value)


def _fast_sort_key(keys: Iterable[PlaneKey]) -> Callable[[PlaneKey], tuple[object, ...]]:
    """:func:`hcsfs.naming.sort_key`, with each well's row and column worked out once, not per plane."""
    wells = {well: sort_key(PlaneKey(well))[:2] for well in {key.well for key in keys}}

    def order(key: PlaneKey) -> tuple[object, ...]:
        return (*wells[key.well], _axis_order(key.site), _axis_order(key.channel),
                _axis_order(key.z), _axis_order(key.t))

    return order


class PassthroughSource(SourceDefaults):
    """Serves a :class:`Workspace` by passing the instrument's TIFF files through unchanged.

    Subclasses set ``format_name`` and call ``__init__`` with the built workspace, the channel names
    and, when the plate's metadata knows it, the pixel size (otherwise it is read from one plane).
    """

    format_name = "passthrough"
    blocking_info = True

    def __init__(
        self,
        workspace: Workspace,
        *,
        channel_names: dict[int, str] | None = None,
        pixel_size_um: float | None = None,
        probe_channel_names: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.root = workspace.root
        self._workspace = workspace
        self._channel_names = dict(channel_names or {})
        self._channel_names_known = not probe_channel_names
        self._pixel_size_um = pixel_size_um
        self._pixel_size_known = pixel_size_um is not None
        self._extra = dict(extra or {})
        self._lock = threading.Lock()

    # -- listing -------------------------------------------------------------------------------
    def keys(self) -> list[PlaneKey]:
        return self._workspace.keys

    def __len__(self) -> int:
        return len(self._workspace.planes)

    def path_of(self, key: PlaneKey) -> Path:
        """The real file behind ``key`` (one dict lookup)."""
        try:
            return self.root / self._workspace.planes[key]
        except KeyError:
            raise PlaneNotFoundError(f"{key.name}: no such plane in {self.root}") from None

    # -- one plane -----------------------------------------------------------------------------
    def info(self, key: PlaneKey) -> PlaneInfo:
        path = self.path_of(key)
        try:
            stat = os.stat(path)
        except FileNotFoundError as exc:
            raise PlaneGoneError(f"{key.name}: {path} has gone") from exc
        except OSError as exc:
            raise PlaneReadError(f"{path}: cannot stat: {exc.strerror or exc}") from exc
        return PlaneInfo(
            key=key, size=stat.st_size, mtime_ns=stat.st_mtime_ns, passthrough=path,
            channel_name=self._channel_name(key), pixel_size_um=self._plane_pixel_size(key),
        )

    def _plane_pixel_size(self, key: PlaneKey) -> float | None:
        return self.pixel_size_um()

    def _channel_name(self, key: PlaneKey) -> str | None:
        names = self.channel_names()
        return names.get(key.channel) if isinstance(key.channel, int) else None

    def channel_names(self) -> dict[int, str]:
        """Channel names from the plate's metadata, else from the first plane of each channel (once)."""
        if not self._channel_names_known:
            with self._lock:
                if not self._channel_names_known:
                    self._channel_names = {**self._probe_channel_names(), **self._channel_names}
                    self._channel_names_known = True
        return self._channel_names

    def _probe_channel_names(self) -> dict[int, str]:
        first: dict[int, PlaneKey] = {}
        for key in self._workspace.keys:
            if isinstance(key.channel, int) and key.channel not in self._channel_names:
                first.setdefault(key.channel, key)
        names = {}
        for channel, key in first.items():
            path = self.root / self._workspace.planes[key]
            try:
                name = probe_channel_name(path)
            except (OSError, ValueError) as exc:
                log.warning("%s: no channel name from %s: %s", self.root, path, exc)
                continue
            if name:
                names[channel] = name
        return names

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        return read_tiff_plane(self.path_of(key))

    def plane_format(self, key: PlaneKey) -> tuple[tuple[int, int], str, float | None]:
        shape, dtype, pixel_size = read_tiff_format(self.path_of(key))
        known = self._plane_pixel_size(key)
        return shape, dtype, known if known is not None else pixel_size

    # -- plate ---------------------------------------------------------------------------------
    def pixel_size_um(self) -> float | None:
        """The plate's pixel size: from its metadata, else from the first plane's header (read once)."""
        if self._pixel_size_known:
            return self._pixel_size_um
        with self._lock:
            if not self._pixel_size_known:
                self._pixel_size_um = self._probe_pixel_size()
                self._pixel_size_known = True
        return self._pixel_size_um

    def _probe_pixel_size(self) -> float | None:
        for key in self._workspace.keys[:1]:
            path = self.root / self._workspace.planes[key]
            try:
                return read_tiff_format(path)[2]
            except (OSError, ValueError) as exc:  # a damaged first plane must not break the mount
                log.warning("%s: no pixel size from %s: %s", self.root, path, exc)
        return None

    def describe(self) -> PlateDescription:
        return PlateDescription(
            format=self.format_name,
            source=str(self.root),
            channel_names=dict(self.channel_names()),
            pixel_size_um=self.pixel_size_um(),
            skipped=list(self._workspace.skipped),
            missing=list(self._workspace.missing),
            extra=dict(self._extra),
        )

    def close(self) -> None:
        """Holds no open files."""
