"""hcsfs's napari plugin: open any plate hcsfs reads, and follow a pipeline run live.

``pip install 'hcsfs[napari]'`` installs napari with a Qt binding; the plugin (``hcsfs/napari.yaml``,
entry point ``napari.manifest``) contributes a reader for mount roots, run folders and every plate
:func:`hcsfs.open_plate` accepts, and a dock widget. ``hcsfs view`` opens napari with both. The modules
import napari only where they need it: :mod:`hcsfs.napari.plate` and :mod:`hcsfs.napari.runs` work
without it.
"""

from __future__ import annotations

__all__ = ["PlateSession"]


def __getattr__(name: str) -> object:
    if name == "PlateSession":
        from hcsfs.napari.session import PlateSession

        return PlateSession
    raise AttributeError(f"module 'hcsfs.napari' has no attribute {name!r}")
