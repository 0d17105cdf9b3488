"""Where hcsfs logs go: a file per mountpoint under the user's state dir, and stderr in the foreground.

A mount daemon runs for weeks, so its log file is capped and survives logrotate: :class:`CappedLogHandler`
rotates it itself past ``max_bytes`` (``mount-....log.1`` .. ``.N``), and, like ``WatchedFileHandler``,
reopens the file when something else moved or deleted it (logrotate's default ``create`` mode); with
``copytruncate`` the file is opened for appending, so writes go on at the new end.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
from pathlib import Path

import platformdirs

__all__ = ["CappedLogHandler", "DEFAULT_BACKUPS", "DEFAULT_MAX_BYTES", "default_log_file",
           "configure_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEFAULT_MAX_BYTES = 10 << 20
DEFAULT_BACKUPS = 3


class CappedLogHandler(logging.handlers.RotatingFileHandler):
    """A size-capped rotating file handler that also notices when the file was rotated under it."""

    def __init__(self, filename: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES,
                 backups: int = DEFAULT_BACKUPS) -> None:
        super().__init__(filename, mode="a", maxBytes=max_bytes, backupCount=backups, encoding="utf-8",
                         delay=False)
        self._identity = self._stream_identity()

    def _stream_identity(self) -> tuple[int, int] | None:
        if self.stream is None:
            return None
        stat = os.fstat(self.stream.fileno())
        return stat.st_dev, stat.st_ino

    def _reopen_if_moved(self) -> None:
        try:
            stat = os.stat(self.baseFilename)
            current: tuple[int, int] | None = (stat.st_dev, stat.st_ino)
        except FileNotFoundError:
            current = None
        if current is not None and current == self._identity:
            return
        if self.stream is not None:
            self.stream.flush()
            self.stream.close()
        self.stream = self._open()
        self._identity = self._stream_identity()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._reopen_if_moved()
        except OSError:
            self.handleError(record)
            return
        super().emit(record)

    def doRollover(self) -> None:  # noqa: N802 - logging's name
        super().doRollover()
        self._identity = self._stream_identity()


def default_log_file(mountpoint: str | Path) -> Path:
    """``~/.local/state/hcsfs/logs/mount-<mountpoint with / as _>.log``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(Path(mountpoint).absolute())).strip("_")
    return Path(platformdirs.user_state_dir("hcsfs")) / "logs" / f"mount-{slug or 'root'}.log"


def configure_logging(*, log_file: Path | None, stderr: bool, debug: bool,
                      max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS) -> None:
    root = logging.getLogger("hcsfs")
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    formatter = logging.Formatter(_FORMAT)
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(CappedLogHandler(log_file, max_bytes, backups))
    if stderr:
        handlers.append(logging.StreamHandler())
    if not handlers:  # keep warnings out of the terminal; the CLI prints its own summary
        handlers.append(logging.NullHandler())
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
