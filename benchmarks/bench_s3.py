"""Object-storage benchmarks (issue 7): a moto S3 server on loopback with 20 ms added per request, the
round trip of a remote object store; both sides of every ratio are measured in the same run.

- client: zarr reads of 64 plane chunks through ``zarr.storage.ObjectStore`` (obstore, what hcsfs
  uses) vs ``FsspecStore`` (s3fs), 8 reader threads: fsspec time / obstore time, goal >= 1
- one plane of 16 tiles: zarr's own whole-plane read (``array[t, c, z]``) vs hcsfs's read: >= 1
- 64 planes by 8 readers vs 1 reader through one ``OmeZarrPlateSource``: >= 4
- listing a 48-well plate (every well's metadata, concurrently) vs the 48 wells' metadata read one
  after another (measured): >= 8
- the disk cache: 64 planes from a warm ``--disk-cache`` vs from S3 (fresh sources): >= 3

Sizes stay small (the machine is shared): 64-128 KiB planes. Never a public endpoint.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from hcsfs.convert import convert_plate
from hcsfs.naming import PlaneKey
from hcsfs.sources import MemoryPlate, open_plate

LATENCY = 0.02


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _plate(wells: list[str], sites: int, shape: tuple[int, int]) -> MemoryPlate:
    rng = np.random.default_rng(0)
    plate = MemoryPlate(pixel_size_um=0.65)
    for well in wells:
        for site in range(1, sites + 1):
            plate.add(PlaneKey(well, site, 1, 1, 1), rng.integers(0, 4000, shape, dtype=np.uint16))
    return plate


def _wells(n: int) -> list[str]:
    return [f"{'ABCDEFGH'[i // 12]}{i % 12 + 1:02d}" for i in range(n)]


def _client_rows(endpoint: str) -> list[dict[str, Any]]:
    import zarr
    from obstore.store import S3Store
    from zarr.storage import ObjectStore

    try:
        import s3fs  # noqa: F401
        from zarr.storage import FsspecStore
    except ImportError:
        return [{"case": "client: fsspec vs obstore", "baseline": None, "ratio": None, "goal": ">= 1",
                 "detail": "s3fs not installed: not measured"}]
    data = np.random.default_rng(1).integers(0, 4000, (64, 256, 256), dtype=np.uint16)
    writer = FsspecStore.from_url("s3://bench/client", storage_options={"endpoint_url": endpoint})
    zarr.create_array(writer, shape=data.shape, chunks=(1, 256, 256), dtype=data.dtype)[...] = data
    stores = {
        "obstore": ObjectStore(S3Store("bench", prefix="client", config={"endpoint": endpoint},
                                       client_options={"allow_http": "true"}), read_only=True),
        "fsspec": FsspecStore.from_url("s3://bench/client", storage_options={"endpoint_url": endpoint},
                                       read_only=True),
    }
    times: dict[str, float] = {}
    for _ in range(2):  # best of two, interleaved
        for name, store in stores.items():
            array = zarr.open_array(store, mode="r")

            def read(a: Any = array) -> None:
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda i: a[i], range(64)))

            times[name] = min(times.get(name, 1e9), _timed(read))
    return [{"case": "client: zarr reads through fsspec/s3fs vs obstore (64 chunks, 8 threads)",
             "baseline": round(times["fsspec"], 3), "ratio": round(times["fsspec"] / times["obstore"], 2),
             "goal": ">= 1", "detail": f"obstore {times['obstore']:.3f} s, fsspec {times['fsspec']:.3f} s"}]


def run(workdir: Path) -> list[dict[str, Any]]:
    from tests.s3.server import MotoServer, s3_env

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    saved = dict(os.environ)
    os.environ.update(s3_env(workdir))
    rows: list[dict[str, Any]] = []
    try:
        with MotoServer() as server:
            import boto3

            endpoint = server.endpoint_url
            opts = {"endpoint_url": endpoint}
            boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
            plate = _plate(_wells(32), 2, (256, 256))
            convert_plate(plate, "s3://bench/p.zarr", **opts)
            convert_plate(_plate(_wells(48), 1, (8, 8)), "s3://bench/wells.zarr", **opts)
            import zarr

            from hcsfs.sinks.zarr import OmeZarrPlateWriter, zarr_location

            writer = OmeZarrPlateWriter(zarr_location("s3://bench/tiled.zarr", **opts))
            tiles = np.random.default_rng(2).integers(0, 4000, (1, 1, 1, 512, 512), dtype=np.uint16)
            writer.create_field("A01", 1, tiles.shape, tiles.dtype, channel_names=["x"], pixel_size_um=None)
            zarr.create_array((writer.path / "A/1/0/0").zarr_store(), shape=tiles.shape,  # type: ignore[operator]
                              chunks=(1, 1, 1, 128, 128), dtype=tiles.dtype, overwrite=True,
                              dimension_names=("t", "c", "z", "y", "x"))[...] = tiles
            writer.finish()
            server.set_latency(LATENCY)
            try:
                rows += _client_rows(endpoint)
            except Exception as exc:  # s3fs and botocore versions that do not fit: report, go on
                rows.append({"case": "client: fsspec vs obstore", "baseline": None, "ratio": None,
                             "goal": ">= 1", "detail": f"not measured: {type(exc).__name__}: {exc}"[:200]})

            # one plane of 16 tiles: zarr's own whole-plane read (its async chunk fetches) vs hcsfs
            source = open_plate("s3://bench/tiled.zarr", **opts)
            key = source.keys()[0]
            hcsfs_time = _timed(lambda: source.read_plane(key))
            tiled = zarr_location("s3://bench/tiled.zarr", **opts) / "A/1/0/0"
            array = zarr.open_array(tiled.zarr_store(), mode="r")  # type: ignore[union-attr]
            whole = _timed(lambda: array[0, 0, 0])
            rows.append({"case": "one plane of 16 tiles: zarr's whole-plane read vs hcsfs",
                         "baseline": round(whole, 3), "ratio": round(whole / hcsfs_time, 2),
                         "goal": ">= 1",
                         "detail": f"hcsfs {hcsfs_time:.3f} s, zarr {whole:.3f} s, "
                                   f"{LATENCY * 1e3:.0f} ms/request"})

            # readers
            keys = plate.keys()
            one = open_plate("s3://bench/p.zarr", **opts)
            one.keys()
            t1 = _timed(lambda: [one.read_plane(k) for k in keys])
            eight = open_plate("s3://bench/p.zarr", **opts)
            eight.keys()

            def parallel() -> None:
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(eight.read_plane, keys))

            t8 = _timed(parallel)
            rows.append({"case": "64 planes: 1 reader vs 8 readers (one source)", "baseline": round(t1, 3),
                         "ratio": round(t1 / t8, 2), "goal": ">= 4", "detail": f"8 readers {t8:.3f} s"})

            # well metadata: the 48 wells one after another (measured, not one well x 48) vs hcsfs
            wells = open_plate("s3://bench/wells.zarr", **opts)
            t_all = _timed(wells.keys)
            single = open_plate("s3://bench/wells.zarr", **opts)
            t_each = _timed(lambda: [single.info(PlaneKey(w, 1, 1, 1, 1)) for w in _wells(48)])
            rows.append({"case": "list a 48-well plate: the wells' metadata one by one vs concurrent",
                         "baseline": round(t_each, 3), "ratio": round(t_each / t_all, 2),
                         "goal": ">= 8", "detail": f"all wells concurrently {t_all:.3f} s, "
                                                   f"one by one {t_each:.3f} s"})

            # disk cache
            cache = workdir / "disk-cache"
            warm = open_plate("s3://bench/p.zarr", disk_cache=cache, **opts)
            warm.keys()
            for k in keys:
                warm.read_plane(k)
            remote = open_plate("s3://bench/p.zarr", **opts)
            remote.keys()
            t_remote = _timed(lambda: [remote.read_plane(k) for k in keys])
            cached = open_plate("s3://bench/p.zarr", disk_cache=cache, **opts)
            cached.keys()
            t_disk = _timed(lambda: [cached.read_plane(k) for k in keys])
            rows.append({"case": "64 planes: from S3 vs from a warm disk cache",
                         "baseline": round(t_remote, 3),
                         "ratio": round(t_remote / t_disk, 2), "goal": ">= 3",
                         "detail": f"disk cache {t_disk:.3f} s"})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return rows


if __name__ == "__main__":
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for row in run(Path(tmp)):
            print(json.dumps(row))
