"""Driving pipeline runs of a mounted plate from outside it: submit a spec, follow a status file.

Everything goes through the mount's files, as a shell script would: the spec is written under a
temporary name in ``.pipelines/`` and renamed into place (the rename starts the run), and progress is
read from ``.pipelines/<name>.status``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from hcsfs.errors import HcsfsError
from hcsfs.progress import Progress, bar

__all__ = ["submit_spec", "run_name", "follow_run", "read_statuses", "render_status", "EXIT_CODES",
           "outcome_of"]

EXIT_CODES = {"done": 0, "failed": 1, "cancelled": 2, "partial": 3, "timeout": 4, "interrupted": 5}
_FINAL = ("done", "failed", "cancelled", "interrupted")


def _pipelines(mountpoint: Path) -> Path:
    folder = mountpoint / ".pipelines"
    if not folder.is_dir():
        raise HcsfsError(f"{mountpoint} is not an hcsfs mount with pipelines (no .pipelines/ folder)")
    return folder


def run_name(spec: Path) -> str:
    """The run's name: the spec's ``name:`` field if it has one, else the file's stem."""
    import yaml

    try:
        document = yaml.safe_load(spec.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        document = None  # the mount will report what is wrong with it
    if isinstance(document, dict) and isinstance(document.get("name"), str):
        return str(document["name"])
    return spec.stem


def submit_spec(mountpoint: Path, spec: Path, *, resume: bool = False) -> str:
    """Copy ``spec`` into ``.pipelines/`` (temporary name, then rename); return the run's name.

    ``resume``: with ``resume: true`` added, so an interrupted run of it continues."""
    folder = _pipelines(mountpoint)
    if spec.suffix not in (".yaml", ".yml", ".json"):
        raise HcsfsError(f"{spec}: a pipeline spec ends in .yaml, .yml or .json")
    data = spec.read_bytes()
    if resume:
        from hcsfs.pipelines.spec import with_resume

        data = with_resume(data, spec.suffix)
    temporary = folder / f".{spec.name}.{os.getpid()}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary, folder / spec.name)
    return run_name(spec)


def read_status(mountpoint: Path, name: str) -> dict[str, Any] | None:
    try:
        return json.loads((_pipelines(mountpoint) / f"{name}.status").read_bytes())  # type: ignore[no-any-return]
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_statuses(mountpoint: Path) -> dict[str, dict[str, Any]]:
    folder = _pipelines(mountpoint)
    statuses = {}
    for path in sorted(folder.glob("*.status")):
        status = read_status(mountpoint, path.stem)
        if status is not None:
            statuses[path.stem] = status
    return statuses


def outcome_of(status: dict[str, Any]) -> str:
    if status["state"] == "done" and status.get("errors"):
        return "partial"
    return str(status["state"])


def follow_run(mountpoint: Path, name: str, *, timeout: float | None = None,
               poll: float = 0.5) -> int:
    """Show the run's progress until it ends; return its exit code (see :data:`EXIT_CODES`)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with Progress(name) as progress:
        while True:
            status = read_status(mountpoint, name)
            if status is not None:
                progress.update(int(status.get("done", 0)), int(status.get("total", 0)),
                                status.get("state", ""))
                if status.get("state") in _FINAL:
                    break
            if deadline is not None and time.monotonic() > deadline:
                return EXIT_CODES["timeout"]
            time.sleep(poll)
    for error in status.get("errors", [])[:10]:
        print(f"  error in {error.get('unit')}: {error.get('message')}")
    if status.get("state") == "failed" and status.get("message"):
        print(f"  {status['message']}")
    return EXIT_CODES[outcome_of(status)]


def render_status(statuses: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name, status in statuses.items():
        done, total = int(status.get("done", 0)), int(status.get("total", 0))
        errors = len(status.get("errors", []))
        line = f"{name:<20} {status.get('state', '?'):<10} {bar(done, total, 20)} {done}/{total}"
        if errors:
            line += f"  {errors} error{'s' if errors != 1 else ''}"
        if status.get("state") == "failed" and status.get("message"):
            line += f"  {status['message']}"
        lines.append(line)
    return lines
