"""The npe2 reader: ``napari /mnt/plate``, ``napari /mnt/plate/screen``, ``napari plate.zarr``.

``get_reader`` only sniffs (a few names on disk, as :func:`hcsfs.sources.detect_format` does) and
returns None for what hcsfs cannot open, so napari's other readers get their turn.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hcsfs.napari.plate import is_mount_root
from hcsfs.napari.runs import find_run

__all__ = ["get_reader", "read"]

log = logging.getLogger("hcsfs.napari")

LayerData = tuple[Any, dict[str, Any], str]


def _target(path: str) -> str | None:
    """``path`` if hcsfs can open it: a URL, a mount root, a run folder or a plate of a known format."""
    if path.startswith("s3://"):
        return path
    folder = Path(path)
    if not folder.is_dir():
        return None
    if is_mount_root(folder) or find_run(folder.absolute()) is not None:
        return path
    if find_run(folder.absolute().parent) is not None:
        return str(folder.parent)  # a result folder of a run: open the run (with its plate)
    from hcsfs.errors import PlateFormatError
    from hcsfs.sources import detect_format

    try:
        detect_format(folder)
    except (PlateFormatError, OSError):
        return None
    return path


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """The reader for ``path`` (one path; napari passes a list for several), or None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    target = _target(str(path))
    if target is None:
        return None
    return lambda _path: read(target)


def read(path: str) -> list[LayerData]:
    """The layers of the plate (and run) at ``path``; in a napari window, the plate widget is docked."""
    from hcsfs.napari.session import PlateSession

    session = PlateSession.open(path)
    layers = session.layer_data()
    _dock_widget_later(session)
    return layers


def _dock_widget_later(session: Any) -> None:
    """Dock the plate widget once napari has added the layers (a Qt viewer only; never fails a read)."""
    try:
        import napari
        from qtpy.QtCore import QTimer
    except ImportError:
        return
    viewer = napari.current_viewer()
    if viewer is None or getattr(viewer, "window", None) is None:
        return

    def dock() -> None:
        try:
            from hcsfs.napari.widget import dock_plate_widget

            dock_plate_widget(viewer, session)
        except Exception:  # a widget that cannot be docked must not lose the layers
            log.exception("napari: the plate widget could not be docked")

    QTimer.singleShot(0, dock)
