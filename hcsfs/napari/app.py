"""``hcsfs view``: napari with a plate, the plate widget docked, optionally following runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["open_viewer", "view"]


def open_viewer(source: str | Path, *, runs: Sequence[str | Path] = (), follow: Sequence[str | Path] = (),
                show: bool = True, **options: Any) -> tuple[Any, Any]:
    """A napari viewer showing ``source`` with the plate widget; ``follow`` runs are polled live.

    Returns ``(viewer, widget)``. ``runs`` are shown as they are now; ``follow`` keeps them current.
    """
    import napari

    from hcsfs.napari.session import PlateSession
    from hcsfs.napari.widget import dock_plate_widget

    session = PlateSession.open(source, runs=runs, **options)
    followed = [session.run_folder(run) for run in follow]  # a wrong name fails before any window opens
    viewer = napari.Viewer(title=f"hcsfs: {session.title}", show=show)
    session.bind(viewer)
    widget = dock_plate_widget(viewer, session)
    for folder in followed:
        widget.follow(folder)
    viewer.reset_view()
    return viewer, widget


def view(source: str | Path, *, follow: Sequence[str | Path] = (), **options: Any) -> None:
    """Open the viewer and run napari's event loop until the window is closed."""
    import napari

    open_viewer(source, follow=follow, **options)
    napari.run()
