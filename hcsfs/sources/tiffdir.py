"""A folder of single-plane TIFFs already named in the flat grammar, served by passthrough.

Opening lists the folder once (names only). Each file is checked lazily, when it is first looked up:
a file that is not a TIFF is left out of the view with a warning; one that cannot be read gives an error
for that file only.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np

from hcsfs.errors import NotAPlaneError, PlaneNameError, PlaneNotFoundError, PlaneReadError
from hcsfs.naming import PlaneKey, parse_name, sort_key
from hcsfs.sources.base import PlaneInfo, PlateDescription, SourceDefaults
from hcsfs.sources.tiffprobe import TIFF_MAGICS, read_tiff_format, read_tiff_plane

__all__ = ["TiffFolderSource", "can_open"]

log = logging.getLogger(__name__)


def can_open(path: Path) -> bool:
    """A folder with at least one file named in the flat grammar."""
    if not path.is_dir():
        return False
    with os.scandir(path) as entries:
        for entry in entries:
            try:
                parse_name(entry.name)
            except PlaneNameError:
                continue
            return True
    return False


class TiffFolderSource(SourceDefaults):
    """Passthrough of ``<folder>/<flat name>.tif`` files."""

    format_name = "tiff-folder"
    blocking_info = True

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise NotADirectoryError(f"{self.folder} is not a folder")
        self._skipped: list[dict[str, str]] = []
        self._rejected: set[PlaneKey] = set()
        self._lock = threading.Lock()
        keys: list[PlaneKey] = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                try:
                    keys.append(parse_name(entry.name))
                except PlaneNameError as exc:
                    self._skip(entry.name, str(exc))
        self._keys = sorted(keys, key=sort_key)
        self._known = frozenset(self._keys)
        self._checked: dict[PlaneKey, tuple[int, int]] = {}
        """(size, mtime) of planes already checked: later opens need no I/O to plan (``info_ready``)."""

    def _skip(self, name: str, reason: str) -> None:
        log.warning("%s: not a plane, left out: %s", self.folder / name, reason)
        with self._lock:
            self._skipped.append({"path": name, "reason": reason})

    def keys(self) -> list[PlaneKey]:
        if not self._rejected:
            return self._keys
        return [k for k in self._keys if k not in self._rejected]

    def _path(self, key: PlaneKey) -> Path:
        if key not in self._known or key in self._rejected:
            raise PlaneNotFoundError(f"{key.name}: no such plane in {self.folder}")
        return self.folder / key.name

    def info(self, key: PlaneKey) -> PlaneInfo:
        path = self._path(key)
        try:
            stat = path.stat()
            with open(path, "rb") as file:
                magic = file.read(4)
        except IsADirectoryError:
            magic = b""
            stat = None
        except OSError as exc:
            link = f" (a link to {os.readlink(path)})" if path.is_symlink() else ""
            raise PlaneReadError(f"{path}{link}: cannot read: {exc.strerror or exc}") from exc
        if magic not in TIFF_MAGICS:
            with self._lock:
                self._rejected.add(key)
            self._skip(key.name, "not a TIFF file")
            raise NotAPlaneError(f"{path}: not a TIFF file")
        assert stat is not None
        self._checked[key] = (stat.st_size, stat.st_mtime_ns)
        return PlaneInfo(key=key, size=stat.st_size, mtime_ns=stat.st_mtime_ns, passthrough=path)

    def info_ready(self, key: PlaneKey) -> PlaneInfo | None:
        """:meth:`info` of a plane already checked (no I/O), else ``None``. The plate is frozen while
        mounted: a file changed since is refused when opened (``PassthroughFile``)."""
        checked = self._checked.get(key)
        if checked is None or key in self._rejected:
            return None
        return PlaneInfo(key=key, size=checked[0], mtime_ns=checked[1], passthrough=self.folder / key.name)

    def read_plane(self, key: PlaneKey) -> np.ndarray:
        return read_tiff_plane(self._path(key))

    def plane_format(self, key: PlaneKey) -> tuple[tuple[int, int], str, float | None]:
        return read_tiff_format(self._path(key))

    def describe(self) -> PlateDescription:
        with self._lock:
            skipped = list(self._skipped)
        return PlateDescription(format=self.format_name, source=str(self.folder), skipped=skipped)

    def close(self) -> None:
        """Holds no open files."""
