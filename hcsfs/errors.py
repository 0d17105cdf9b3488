"""Every exception hcsfs raises on purpose.

Each leaf also inherits the standard-library error it means, so callers that only know the standard
library (``except FileNotFoundError``) catch it too. The FUSE layer maps these to errno values in one
place (:mod:`hcsfs.fs.errno_map`).
"""

from __future__ import annotations


class HcsfsError(Exception):
    """Root of all hcsfs errors; the CLI prints these as one line (traceback only with ``--debug``)."""


class PlaneNameError(HcsfsError, ValueError):
    """A name does not follow the flat-name grammar (raised by :func:`hcsfs.naming.parse_name`)."""


class PlaneNotFoundError(HcsfsError, KeyError):
    """A source has no plane under this key (maps to ``ENOENT``)."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "plane not found"


class PlaneReadError(HcsfsError, OSError):
    """One plane's bytes could not be read or decoded (maps to ``EIO`` for that file only)."""


class PlateFormatError(HcsfsError, ValueError):
    """A folder or store is not a plate hcsfs can open, or its metadata is broken."""


class PlateCollisionError(PlateFormatError):
    """Two source files map to the same flat name; the message names both."""


class MountError(HcsfsError, OSError):
    """A mount could not be made or cleared (no /dev/fuse, busy or stale mountpoint, ...)."""


class NotAPlaneError(PlaneNotFoundError):
    """A source entry named like a plane is not one (e.g. not a TIFF); it is left out of the view."""


class OutputExistsError(HcsfsError, FileExistsError):
    """An output (e.g. ``hcsfs convert``'s destination store) exists and overwriting was not asked for."""
