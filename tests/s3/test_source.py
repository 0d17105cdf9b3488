"""OME-Zarr plates on a real S3 protocol server (moto, loopback): open, read, convert, configuration,
laziness, the disk cache and failures of the server."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import hcsfs
from hcsfs import MemoryPlate, PlaneKey
from hcsfs.convert import convert_plate
from hcsfs.errors import OutputExistsError, PlaneReadError, PlateFormatError
from hcsfs.sources.omezarr import OmeZarrPlateSource
from hcsfs.sources.omezarr.remote import S3Bucket
from tests.conformance import SourceConformance
from tests.s3.conftest import S3

pytestmark = pytest.mark.timeout(120)

FAST = {"retries": 0, "timeout": 2}


def _same(source: object, plate: MemoryPlate) -> None:
    keys = source.keys()  # type: ignore[attr-defined]
    assert keys == plate.keys()
    for key in keys:
        np.testing.assert_array_equal(source.read_plane(key), plate.read_plane(key))  # type: ignore[attr-defined]


class TestS3Conformance(SourceConformance):
    """The conformance suite over a plate on the S3 protocol server (and the views over it)."""

    @pytest.fixture
    def source(self, s3: S3, plate: MemoryPlate) -> Iterator[OmeZarrPlateSource]:
        url = s3.url("conformance/p.ome.zarr")
        convert_plate(plate, url, **s3.options)
        source = hcsfs.open_plate(url, **s3.options)
        yield source  # type: ignore[misc]
        source.close()

    @pytest.fixture
    def expected(self, plate: MemoryPlate) -> dict[PlaneKey, np.ndarray]:
        return {k: plate.read_plane(k) for k in plate.keys()}


@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
@pytest.mark.parametrize("zarr_impl", ["zarr-python", "tensorstore"])
def test_convert_to_s3_and_read_every_plane(s3: S3, plate: MemoryPlate, ngff: str, zarr_impl: str) -> None:
    url = s3.url("screens/p.ome.zarr")
    result = convert_plate(plate, url, ngff=ngff, **s3.options)
    assert result.planes == len(plate.keys())
    root_doc = "zarr.json" if ngff == "0.5" else ".zattrs"
    assert f"screens/p.ome.zarr/{root_doc}" in s3.keys("screens/")
    source = hcsfs.open_plate(url, zarr_impl=zarr_impl, **s3.options)
    assert source.format_name == "ome-zarr"
    assert source.describe().source == url
    _same(source, plate)
    info = source.info(plate.keys()[0])
    assert info.pixel_size_um == pytest.approx(0.65) and info.channel_name == "DAPI"
    source.close()


def test_convert_from_s3_to_folder_and_back(s3: S3, plate: MemoryPlate, tmp_path: Path) -> None:
    first = s3.url("a.zarr")
    convert_plate(plate, first, chunks="well", compressor="blosclz4", **s3.options)
    convert_plate(first, tmp_path / "local.zarr", **s3.options)  # S3 -> folder
    _same(hcsfs.open_plate(tmp_path / "local.zarr"), plate)
    convert_plate(first, s3.url("b.zarr"), **s3.options)  # S3 -> S3, same endpoint by default
    _same(hcsfs.open_plate(s3.url("b.zarr"), **s3.options), plate)


def test_existing_s3_plate_is_refused_then_replaced(s3: S3, plate: MemoryPlate) -> None:
    url = s3.url("p.zarr")
    convert_plate(plate, url, **s3.options)
    with pytest.raises(OutputExistsError):
        convert_plate(plate, url, **s3.options)
    smaller = MemoryPlate(pixel_size_um=0.65)
    key = plate.keys()[0]
    smaller.add(key, plate.read_plane(key))
    convert_plate(smaller, url, overwrite=True, **s3.options)
    assert hcsfs.open_plate(url, **s3.options).keys() == [key]
    assert not [k for k in s3.keys("p.zarr/") if k.startswith("p.zarr/B/")]  # old wells are gone


def test_endpoint_from_environment_and_profile(s3: S3, plate: MemoryPlate, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url = s3.url("p.zarr")
    convert_plate(plate, url, **s3.options)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint_url)  # the standard variable, no option
    _same(hcsfs.open_plate(url), plate)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # the environment would win over the profile
    config = Path(os.environ["AWS_CONFIG_FILE"])
    config.write_text(f"[profile lab]\nendpoint_url = {s3.endpoint_url}\nregion = eu-west-1\n"
                      "aws_access_key_id = lab\naws_secret_access_key = lab-secret\n")
    source = hcsfs.open_plate(url, profile="lab")
    _same(source, plate)
    assert source.root.bucket.store.config["region"] == "eu-west-1"  # type: ignore[attr-defined]
    with pytest.raises(PlateFormatError, match="403|Permission"):  # unsigned, private bucket
        hcsfs.open_plate(url, anon=True, **s3.options)
    client = s3.client()
    for key in s3.keys("p.zarr/"):  # a public plate
        client.put_object_acl(Bucket=s3.bucket, Key=key, ACL="public-read")  # type: ignore[attr-defined]
    _same(hcsfs.open_plate(url, anon=True, retries=1, **s3.options), plate)  # a public bucket


def test_bad_options_and_urls(s3: S3, plate: MemoryPlate, tmp_path: Path) -> None:
    with pytest.raises(PlateFormatError, match="unknown option"):
        hcsfs.open_plate(s3.url("p.zarr"), endpont_url="x", **s3.options)
    with pytest.raises(PlateFormatError, match="only OME-Zarr"):
        hcsfs.open_plate(s3.url("p.zarr"), format="tiff-folder")
    with pytest.raises(PlateFormatError):  # nothing there: a one-line error, no local path checks
        hcsfs.open_plate(s3.url("nothing.zarr"), **s3.options)
    convert_plate(plate, tmp_path / "local.zarr")
    with pytest.raises(PlateFormatError, match="s3:// URLs"):
        hcsfs.open_plate(tmp_path / "local.zarr", anon=True)
    with pytest.raises(Exception, match="retries"):
        hcsfs.open_plate(s3.url("p.zarr"), retries=-1, **s3.options)


def test_one_plane_fetches_only_its_well(s3: S3, plate: MemoryPlate, monkeypatch: pytest.MonkeyPatch) -> None:
    url = s3.url("p.zarr")
    convert_plate(plate, url, **s3.options)
    source = OmeZarrPlateSource(url, **s3.options)  # reads the plate document once
    fetched: list[str] = []
    real_get = S3Bucket.get

    def spy(self: S3Bucket, key: str) -> bytes:
        fetched.append(key)
        return real_get(self, key)

    monkeypatch.setattr(S3Bucket, "get", spy)
    key = plate.keys()[-1]  # B03
    source.info(key)
    np.testing.assert_array_equal(source.read_plane(key), plate.read_plane(key))
    # B03's documents only (the well, its two field images and their arrays), each once; the array
    # opens from the document already read
    assert sorted(fetched) == sorted(f"p.zarr/B/3/{n}zarr.json" for n in ("", "0/", "0/0/", "1/", "1/0/"))


def test_plane_of_many_chunks_fetches_them_concurrently(s3: S3) -> None:
    import zarr

    from hcsfs.sinks.zarr import OmeZarrPlateWriter, zarr_location

    writer = OmeZarrPlateWriter(zarr_location(s3.url("tiled.zarr"), **s3.options))
    data = np.arange(96 * 128, dtype=np.uint16).reshape(1, 1, 1, 96, 128)
    writer.create_field("A01", 1, data.shape, data.dtype, channel_names=["x"], pixel_size_um=None)
    tiled = zarr.create_array((writer.path / "A/1/0/0").zarr_store(), shape=data.shape,  # type: ignore[operator]
                              chunks=(1, 1, 1, 24, 32), dtype=data.dtype, overwrite=True,
                              dimension_names=("t", "c", "z", "y", "x"))
    tiled[...] = data  # 16 tiles of 24x32
    writer.finish()
    source = OmeZarrPlateSource(s3.url("tiled.zarr"), **s3.options)
    key = source.keys()[0]
    np.testing.assert_array_equal(source.read_plane(key), data[0, 0, 0])
    assert source.cache_statistics().misses == 16
    assert source.reader._pool is not None  # fetched by the chunk pool, not one after the other


def test_server_down_is_a_read_error_and_reads_recover(s3: S3, plate: MemoryPlate) -> None:
    url = s3.url("p.zarr")
    convert_plate(plate, url, **s3.options)
    source = hcsfs.open_plate(url, **s3.options, **FAST)
    keys = source.keys()
    first, rest = keys[0], keys[1:]
    source.read_plane(first)
    s3.server.stop()
    try:
        np.testing.assert_array_equal(source.read_plane(first), plate.read_plane(first))  # cached
        for key in rest[:3]:
            with pytest.raises(PlaneReadError) as raised:
                source.read_plane(key)
            assert raised.value.errno is None or raised.value.errno == errno.EIO
    finally:
        s3.server.start()
    for key in rest:  # nothing failed was cached
        np.testing.assert_array_equal(source.read_plane(key), plate.read_plane(key))


def test_well_metadata_failure_is_transient(s3: S3, plate: MemoryPlate) -> None:
    url = s3.url("p.zarr")
    convert_plate(plate, url, **s3.options)
    source = hcsfs.open_plate(url, **s3.options, **FAST)
    s3.server.stop()
    try:
        with pytest.raises(PlaneReadError, match="well A01 metadata"):
            source.info(plate.keys()[0])
    finally:
        s3.server.start()
    _same(source, plate)
    assert source.describe().skipped == []


def test_disk_cache_serves_chunks_without_the_server_and_stays_bounded(
    s3: S3, plate: MemoryPlate, tmp_path: Path,
) -> None:
    url = s3.url("p.zarr")
    convert_plate(plate, url, **s3.options)
    cache = tmp_path / "chunks"
    warm = hcsfs.open_plate(url, disk_cache=cache, **s3.options)
    _same(warm, plate)
    plane_bytes = 48 * 64 * 2
    files = list(cache.rglob("*.npy"))
    assert len(files) == len(plate.keys())
    cold = hcsfs.open_plate(url, disk_cache=cache, **s3.options, **FAST)
    cold.keys()  # metadata while the server is up
    s3.server.stop()
    try:
        _same(cold, plate)  # every chunk from the disk cache
    finally:
        s3.server.start()
    limit = 4 * (plane_bytes + 128)
    small = hcsfs.open_plate(url, disk_cache=tmp_path / "small", disk_cache_size=limit, **s3.options)
    _same(small, plate)
    total = sum(f.stat().st_size for f in (tmp_path / "small").rglob("*.npy"))
    assert 0 < total <= limit


def test_server_that_hangs_times_out_as_a_read_error(s3: S3, plate: MemoryPlate) -> None:
    url = s3.url("p.zarr")
    convert_plate(plate, url, **s3.options)
    source = hcsfs.open_plate(url, retries=0, timeout=1, **s3.options)
    key = source.keys()[0]
    s3.server.pause()  # accepts nothing, answers nothing
    try:
        with pytest.raises(PlaneReadError):
            source.read_plane(key)
    finally:
        s3.server.resume()
    np.testing.assert_array_equal(source.read_plane(key), plate.read_plane(key))
