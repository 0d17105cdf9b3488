"""A run's live status (``.pipelines/<name>.status``) and log (``.pipelines/<name>.log``).

Both are rendered on read from in-memory state guarded by one lock, so every ``cat`` sees the current
progress; the manager's notifier tells the mount what changed, at most a few times a second.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["RunStatus", "STATES", "MAX_ERRORS", "MAX_LOG_LINES"]

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINAL = frozenset({"done", "failed", "cancelled", "interrupted"})
RESUMABLE = frozenset({"cancelled", "interrupted", "failed"})
"""States a run continues from with ``resume: true`` (``interrupted``: its process died mid-run)."""
MAX_ERRORS = 1000
MAX_LOG_LINES = 5000


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class RunStatus:
    """Thread-safe state of one run; ``changed(name)`` is called after every update."""

    def __init__(self, name: str, spec_file: str, changed: Callable[[str], None],
                 output: str = "zarr") -> None:
        self.name = name
        self._changed = changed
        self._lock = threading.Lock()
        self._doc: dict[str, Any] = {
            "name": name, "state": "queued", "done": 0, "total": 0, "errors": [], "device": None,
            "started": None, "finished": None, "output": f"{name}/", "spec": spec_file,
            "output_kind": output, "planes": 0, "fallback": None, "message": None, "field": None,
            "errors_dropped": 0, "scheduler": None, "interrupted": None,
        }
        self._log: deque[str] = deque(maxlen=MAX_LOG_LINES)
        self._log_dropped = 0

    @classmethod
    def restore(cls, doc: dict[str, Any], log: str, changed: Callable[[str], None]) -> RunStatus:
        status = cls(str(doc["name"]), str(doc.get("spec", "")), changed)
        status._doc.update(doc)
        status._log.extend(log.splitlines())
        return status

    @property
    def state(self) -> str:
        with self._lock:
            return str(self._doc["state"])

    def update(self, **fields: Any) -> None:
        with self._lock:
            self._doc.update(fields)
        self._changed(self.name)

    def add_done(self, count: int = 1) -> None:
        with self._lock:
            self._doc["done"] += count
        self._changed(self.name)

    def add_planes(self, count: int) -> None:
        with self._lock:
            self._doc["planes"] += count
        self._changed(self.name)

    def add_error(self, unit: str | None, message: str) -> None:
        with self._lock:
            if len(self._doc["errors"]) < MAX_ERRORS:
                self._doc["errors"].append({"unit": unit, "message": message})
            else:
                self._doc["errors_dropped"] += 1
        self.log(f"error in {unit or 'run'}: {message}")

    def log(self, message: str) -> None:
        line = f"{now_iso()} {message}"
        with self._lock:
            if len(self._log) == self._log.maxlen:
                self._log_dropped += 1
            self._log.append(line)
        self._changed(self.name)

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            doc = dict(self._doc)
            doc["errors"] = list(doc["errors"])
        return doc

    def status_bytes(self) -> bytes:
        return (json.dumps(self.to_dict(), indent=1) + "\n").encode()

    def log_bytes(self) -> bytes:
        with self._lock:
            head = [f"({self._log_dropped} earlier lines dropped)"] if self._log_dropped else []
            return ("\n".join([*head, *self._log]) + "\n").encode() if (head or self._log) else b""
