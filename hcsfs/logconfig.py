"""Where hcsfs logs go: a file per mountpoint under the user's state dir, and stderr in the foreground."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import platformdirs

__all__ = ["default_log_file", "configure_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def default_log_file(mountpoint: str | Path) -> Path:
    """``~/.local/state/hcsfs/logs/mount-<mountpoint with / as _>.log``."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(Path(mountpoint).absolute())).strip("_")
    return Path(platformdirs.user_state_dir("hcsfs")) / "logs" / f"mount-{slug or 'root'}.log"


def configure_logging(*, log_file: Path | None, stderr: bool, debug: bool) -> None:
    root = logging.getLogger("hcsfs")
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    formatter = logging.Formatter(_FORMAT)
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    if stderr:
        handlers.append(logging.StreamHandler())
    if not handlers:  # keep warnings out of the terminal; the CLI prints its own summary
        handlers.append(logging.NullHandler())
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
