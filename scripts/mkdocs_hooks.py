"""MkDocs hooks: pages that are generated elsewhere get a placeholder when they do not exist yet.

``docs/benchmarks.md`` is written by ``make bench``; a fresh clone has none, and a strict build
(warnings are errors) must not fail on the nav entry that points to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLACEHOLDERS = {
    "benchmarks.md": "# Benchmarks\n\nNot measured in this build: run `make bench`, which writes this page "
                     "(`docs/benchmarks.md`) and `docs/benchmarks.png`, then `make docs`.\n",
}


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for name, text in PLACEHOLDERS.items():
        if files.get_file_from_path(name) is None and not (Path(config["docs_dir"]) / name).exists():
            files.append(File.generated(config, name, content=text))
    return files
