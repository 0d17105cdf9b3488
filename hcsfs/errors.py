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


class PlaneGoneError(PlaneNotFoundError):
    """A plane the source lists has lost its storage (file deleted while mounted): ``ENOENT``, and
    unlike a plain lookup miss it is logged with the source path."""


class NotAPlaneError(PlaneNotFoundError):
    """A source entry named like a plane is not one (e.g. not a TIFF); it is left out of the view."""


class OutputExistsError(HcsfsError, FileExistsError):
    """An output (e.g. ``hcsfs convert``'s destination store) exists and overwriting was not asked for."""


class SpecError(HcsfsError, ValueError):
    """A pipeline spec is invalid (raised by :mod:`hcsfs.pipelines.spec`); ``field`` names the culprit.

    ``field`` is a dotted path into the spec (``steps[1].args.sigma``, ``select.channel``, ``name``);
    the message starts with it. The pipeline manager records it as a failed run rather than raising.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


class UnknownFunctionError(HcsfsError, KeyError):
    """A pipeline function or implementation is not in the registry; ``name`` is what was asked for."""

    def __init__(self, name: str, message: str | None = None) -> None:
        super().__init__(message or f"unknown function {name!r}")
        self.name = name

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


class RunNotFoundError(PlaneNotFoundError):
    """No pipeline run of that name (raised by :class:`hcsfs.pipelines.PipelineManager`; ``ENOENT``)."""
