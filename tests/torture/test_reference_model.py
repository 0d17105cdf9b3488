"""Reference-model checks: random reads through a real mount against the in-process bytes.

For every source type, 64 threads and 8 processes read random ``(file, offset, size)`` ranges —
uniform, straddling the TIFF header/pixel boundary, and at or past EOF — and every answer is compared
with the bytes the in-process encoder (or the passthrough file) gives. The mount's cache is smaller
than the plate, so encoded planes are evicted and decoded again while being read.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import hcsfs
from tests.torture.conftest import examples
from tests.torture.helpers import SOURCE_TYPES, make_source, read_plan, reference_files

pytestmark = pytest.mark.mount

THREADS = 64
PROCESSES = 8
READS_PER_THREAD = examples(100, 1000)
READS_PER_PROCESS = examples(300, 3000)
TOTALS: dict[str, dict[str, int]] = {}

_READER = r"""
import hashlib, json, os, sys
root, plan = sys.argv[1], json.load(open(sys.argv[2]))
fds = {}
for name, offset, length in plan:
    fd = fds.get(name)
    if fd is None:
        fd = fds[name] = os.open(os.path.join(root, name), os.O_RDONLY)
    print(hashlib.sha256(os.pread(fd, length, offset)).hexdigest())
for fd in fds.values():
    os.close(fd)
"""


def _thread_reads(root: Path, files: dict[str, bytes], plan: list[tuple[str, int, int]],
                  mismatches: list[str], counter: list[int]) -> None:
    fds: dict[str, int] = {}
    try:
        for i, (name, offset, length) in enumerate(plan):
            fd = fds.get(name)
            if fd is None:
                fd = fds[name] = os.open(root / name, os.O_RDONLY)
            data = os.pread(fd, length, offset)
            if data != files[name][offset : offset + length]:
                mismatches.append(f"{name} [{offset}:+{length}] got {len(data)} bytes")
            counter.append(1)
            if i % 10 == 9:  # reopen now and then: open/release race with reads of other threads
                os.close(fds.pop(name))
    except OSError as exc:
        mismatches.append(f"{exc!r}")
    finally:
        for fd in fds.values():
            os.close(fd)


@pytest.mark.parametrize("kind", SOURCE_TYPES)
def test_random_reads_equal_the_reference(kind: str, tmp_path: Path, mountpoint: Path, unchanged,  # type: ignore[no-untyped-def]
                                          watchdog) -> None:
    source = make_source(kind, tmp_path / "source")
    if isinstance(source, Path):
        unchanged(source)
    files = reference_files(source)
    total = sum(map(len, files.values()))
    with hcsfs.mounted(source, mountpoint, cache_size=max(1 << 16, total // 4)) as mnt:
        assert sorted(p for p in os.listdir(mnt.path) if not p.startswith(".")) == sorted(files)
        mismatches: list[str] = []
        counter: list[int] = []
        plans = [read_plan(files, READS_PER_THREAD, seed) for seed in range(THREADS)]
        process_plans = [read_plan(files, READS_PER_PROCESS, 1000 + seed) for seed in range(PROCESSES)]
        with watchdog.bound(f"{THREADS} threads and {PROCESSES} processes reading {kind}", 120, mnt.path):
            readers = []
            for seed, plan in enumerate(process_plans):
                plan_file = tmp_path / f"plan{seed}.json"
                plan_file.write_text(json.dumps(plan))
                command = [sys.executable, "-c", _READER, str(mnt.path), str(plan_file)]
                readers.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
            threads = [threading.Thread(target=_thread_reads,
                                        args=(mnt.path, files, plan, mismatches, counter)) for plan in plans]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for reader, plan in zip(readers, process_plans, strict=True):
                out, _ = reader.communicate(timeout=120)
                assert reader.returncode == 0
                digests = out.split()
                assert len(digests) == len(plan)
                for digest, (name, offset, length) in zip(digests, plan, strict=True):
                    counter.append(1)
                    if hashlib.sha256(files[name][offset : offset + length]).hexdigest() != digest:
                        mismatches.append(f"process: {name} [{offset}:+{length}]")
    assert mismatches == []
    assert len(counter) == THREADS * READS_PER_THREAD + PROCESSES * READS_PER_PROCESS
    TOTALS[kind] = {"reads": len(counter), "mismatches": len(mismatches), "files": len(files)}
    print(f"reference model {kind}: {len(counter)} reads of {len(files)} files compared, "
          f"{len(mismatches)} mismatches")
