"""Generated ImageXpress (MetaXpress) plates for tests: real file-name shapes, pixels of our own.

Every plane is a tiny uncompressed 8x8 uint16 TIFF whose pixels encode a running number, so two files
never have the same bytes and a byte-for-byte comparison through the mount means something.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tifffile

# MetaXpress names, nested folders and the .HTD live in the package (make demo writes such plates too).
from hcsfs.synthetic import guid, htd_text, ixm_name, nested_relpaths, write_htd  # noqa: F401

SAMPLES = Path(os.environ.get("HCSFS_SAMPLES", Path(__file__).resolve().parents[3] / "shared" / "samples")).resolve()
LISTING = SAMPLES / "imagexpress_listing" / "images.txt"

_SHAPE = (8, 8)


def _template() -> tuple[bytes, int]:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, np.zeros(_SHAPE, np.uint16), description="hcsfs test plane")
    data = buffer.getvalue()
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        offset = tif.pages.first.dataoffsets[0]
    return data, offset


_TEMPLATE, _OFFSET = _template()
_counter = 0


def plane_bytes(seed: int | None = None) -> bytes:
    """A valid single-plane TIFF whose pixels are all ``seed`` (a running number by default)."""
    global _counter
    if seed is None:
        _counter += 1
        seed = _counter
    pixels = np.full(_SHAPE, seed % 65536, np.uint16).tobytes()
    return _TEMPLATE[:_OFFSET] + pixels + _TEMPLATE[_OFFSET + len(pixels):]


def write_files(root: Path, relpaths: Iterable[str], content: bytes | None = None) -> list[Path]:
    """Create each file (and its folders); TIFF names get a unique plane, others ``content`` or b''."""
    written = []
    for rel in relpaths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        is_tiff = rel.lower().endswith((".tif", ".tiff")) and not path.name.startswith("._")
        path.write_bytes(plane_bytes() if is_tiff else (content or b""))
        written.append(path)
    return written


def listing_names() -> list[str]:
    """The file names of the real MetaXpress listing (``imagexpress_listing/images.txt``)."""
    return [line.rsplit("/", 1)[-1] for line in LISTING.read_text().splitlines() if line.strip()]


def tree_digest(root: Path) -> str:
    """One hash over every file's relative path, size, mtime and bytes (and every folder's name)."""
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        digest.update(os.path.relpath(folder, root).encode() + b"/\0")
        for name in sorted(files):
            path = Path(folder, name)
            stat = path.stat()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
