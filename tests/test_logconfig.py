"""The daemon's log file: capped in size, and it survives logrotate (moved, deleted or truncated)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from hcsfs.logconfig import CappedLogHandler, configure_logging


@pytest.fixture
def logger(tmp_path: Path) -> Iterator[tuple[logging.Logger, CappedLogHandler, Path]]:
    path = tmp_path / "logs" / "mount.log"
    path.parent.mkdir()
    handler = CappedLogHandler(path, max_bytes=4096, backups=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger(f"hcsfs.test-logconfig.{tmp_path.name}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    yield log, handler, path
    log.removeHandler(handler)
    handler.close()


def test_logrotate_moving_the_file_away_is_noticed(logger) -> None:
    log, _, path = logger
    log.info("before rotation")
    path.rename(path.with_name("mount.log.2024-01-01"))  # logrotate's default: move, then create
    log.info("after rotation")
    assert path.read_text() == "after rotation\n"
    assert path.with_name("mount.log.2024-01-01").read_text() == "before rotation\n"
    path.unlink()  # deleted outright: a new file, not writes into the void
    log.info("after deletion")
    assert path.read_text() == "after deletion\n"


def test_copytruncate_keeps_appending(logger) -> None:
    log, _, path = logger
    log.info("one")
    with open(path, "r+") as file:  # logrotate copytruncate
        file.truncate(0)
    log.info("two")
    assert path.read_text() == "two\n"


def test_the_file_is_capped_with_a_few_backups(logger) -> None:
    log, _, path = logger
    line = "x" * 99
    for _ in range(500):  # 50 KB into a 4 KiB cap
        log.info(line)
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["mount.log", "mount.log.1", "mount.log.2"]
    for name in files:
        assert (path.parent / name).stat().st_size <= 4096
    assert path.read_text().splitlines()[-1] == line


def test_configure_logging_uses_the_capped_handler(tmp_path: Path) -> None:
    root = logging.getLogger("hcsfs")
    before = list(root.handlers)
    try:
        configure_logging(log_file=tmp_path / "a" / "m.log", stderr=False, debug=False, max_bytes=1000)
        added = [h for h in root.handlers if h not in before]
        assert len(added) == 1 and isinstance(added[0], CappedLogHandler)
        assert added[0].maxBytes == 1000 and added[0].backupCount == 3
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
            handler.close()
