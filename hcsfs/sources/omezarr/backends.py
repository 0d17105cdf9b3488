"""The pluggable zarr implementation: open an array, know its metadata, read a region.

Two implementations behind one small protocol, chosen by name (``--zarr-impl``):

- ``zarr-python`` (default): zarr-python 3; uses the Rust ``zarrs`` codec pipeline for the local arrays
  it opens when the ``zarrs`` package is installed (``use_zarrs=False`` turns that off). Arrays on
  object storage are read through one shared obstore client (:mod:`.remote`).
- ``tensorstore``: Google's TensorStore (``zarr`` driver for v2, ``zarr3`` for v3) with its own cache
  disabled, since hcsfs keeps a byte-bounded cache of decoded chunks itself; ``s3://`` plates through
  its own ``s3`` key-value store (same endpoint, region, and anonymous or profile credentials).

Both are imported only when asked for. Reads are synchronous and may be called from many threads.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from hcsfs.errors import HcsfsError

if TYPE_CHECKING:
    from hcsfs.sources.omezarr.meta import Node
    from hcsfs.sources.omezarr.remote import RemotePath

__all__ = ["ZARR_IMPLS", "ZarrArray", "ZarrImpl", "get_zarr_impl", "zarrs_available"]


class ZarrArray(Protocol):
    """An open array: its metadata and region reads."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fill_value: Any

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        """The decoded region (missing chunks read as the fill value)."""
        ...


class ZarrImpl(Protocol):
    name: str

    def open_array(self, path: Node, zarr_format: int, document: dict[str, Any] | None = None) -> ZarrArray:
        """Open the array at ``path`` (a folder or an ``s3://`` :class:`RemotePath`); ``document`` is
        its ``zarr.json`` when the caller already read it (saves a round trip on object storage)."""
        ...


def zarrs_available() -> bool:
    return importlib.util.find_spec("zarrs") is not None


# --- zarr-python ---------------------------------------------------------------------------------

_ZARRS_PIPELINE = "zarrs.ZarrsCodecPipeline"
_config_lock = threading.Lock()


class _ZarrPythonArray:
    def __init__(self, array: Any) -> None:
        self._array = array
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.fill_value = array.fill_value

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        return np.asarray(self._array[region])


class ZarrPythonImpl:
    """zarr-python 3, with the zarrs codec pipeline when available."""

    name = "zarr-python"

    def __init__(self, *, use_zarrs: bool | None = None) -> None:
        import zarr

        self._zarr = zarr
        self.use_zarrs = zarrs_available() if use_zarrs is None else use_zarrs
        if self.use_zarrs and not zarrs_available():
            raise HcsfsError("the zarrs codec pipeline was asked for but the zarrs package is missing")

    def _open(self, path: Node, zarr_format: int, document: dict[str, Any] | None) -> Any:
        if isinstance(path, Path):
            return self._zarr.open_array(str(path), mode="r", zarr_format=zarr_format)  # type: ignore[arg-type]
        store_path = path.zarr_store()
        if document is not None and zarr_format == 3:
            from zarr.core.array import Array, AsyncArray

            return Array(AsyncArray(metadata=document, store_path=store_path))  # type: ignore[call-overload]
        return self._zarr.open_array(store_path, mode="r", zarr_format=zarr_format)  # type: ignore[arg-type]

    def open_array(self, path: Node, zarr_format: int, document: dict[str, Any] | None = None) -> ZarrArray:
        if not self.use_zarrs or not isinstance(path, Path):
            # On object storage zarrs would rebuild its own client per array (no shared connection
            # pool): measured slower there than zarr-python's pipeline over hcsfs's one obstore client.
            return _ZarrPythonArray(self._open(path, zarr_format, document))
        # The codec pipeline class is read from zarr's global config when an array is opened, so it
        # is set only around our own opens, leaving the process-wide default alone.
        with _config_lock, self._zarr.config.set({"codec_pipeline.path": _ZARRS_PIPELINE}):
            array = self._open(path, zarr_format, document)
        return _ZarrPythonArray(array)


# --- tensorstore ---------------------------------------------------------------------------------


class _TensorStoreArray:
    def __init__(self, store: Any) -> None:
        self._store = store
        self.shape = tuple(int(s) for s in store.shape)
        self.dtype = np.dtype(store.dtype.numpy_dtype)
        fill = store.fill_value
        self.fill_value = None if fill is None else np.asarray(fill).item()

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        return np.asarray(self._store[region].read().result())


class TensorStoreImpl:
    """TensorStore with its chunk cache off (hcsfs caches decoded chunks itself)."""

    name = "tensorstore"

    def __init__(self, *, concurrency: int = 4) -> None:
        import tensorstore

        self._ts = tensorstore
        self._context = tensorstore.Context({
            "cache_pool": {"total_bytes_limit": 0},
            "data_copy_concurrency": {"limit": concurrency},
            "file_io_concurrency": {"limit": max(concurrency, 8)},
        })

    def open_array(self, path: Node, zarr_format: int, document: dict[str, Any] | None = None) -> ZarrArray:
        spec = {
            "driver": "zarr3" if zarr_format == 3 else "zarr",
            "kvstore": ({"driver": "file", "path": str(path) + "/"} if isinstance(path, Path)
                        else _s3_kvstore(path)),
            "recheck_cached_data": False,
            "recheck_cached_metadata": False,
        }
        store = self._ts.open(spec, read=True, open=True, context=self._context).result()
        return _TensorStoreArray(store)


def _s3_kvstore(path: RemotePath) -> dict[str, Any]:
    """TensorStore's own S3 driver for the same bucket, endpoint, region and credentials."""
    options = path.options
    kvstore: dict[str, Any] = {"driver": "s3", "bucket": path.bucket_name, "path": path.key + "/"}
    endpoint = options.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
        "AWS_ENDPOINT_URL")
    if endpoint:
        kvstore["endpoint"] = endpoint
    region = options.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    kvstore["aws_region"] = region or "us-east-1"
    if options.anon:
        kvstore["aws_credentials"] = {"type": "anonymous"}
    elif options.profile:
        kvstore["aws_credentials"] = {"type": "profile", "profile": options.profile}
    return kvstore


ZARR_IMPLS: dict[str, type[ZarrPythonImpl | TensorStoreImpl]] = {
    ZarrPythonImpl.name: ZarrPythonImpl,
    TensorStoreImpl.name: TensorStoreImpl,
}


def get_zarr_impl(name: str | ZarrImpl = "zarr-python") -> ZarrImpl:
    """An implementation by name; an instance is returned as is."""
    if not isinstance(name, str):
        return name
    try:
        factory = ZARR_IMPLS[name]
    except KeyError:
        known = ", ".join(ZARR_IMPLS)
        raise HcsfsError(f"unknown zarr implementation {name!r} (known: {known})") from None
    try:
        return factory()
    except ImportError as exc:
        raise HcsfsError(f"zarr implementation {name!r} is not installed: {exc}") from exc
