"""Fixtures for object-storage tests: a moto S3 server on 127.0.0.1 started here, and plates in it.

The server is one per module (a child process, stopped at the end); every test gets its own bucket,
fake credentials and an empty AWS config, so nothing from the machine or any public endpoint is used.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hcsfs import MemoryPlate
from tests.plates import memory_plate, plate_keys

if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    import boto3  # CI installs the s3 extras: a missing one fails, never skips
    import moto  # noqa: F401
    import obstore  # noqa: F401
else:
    pytest.importorskip("obstore", reason="the s3 extra is not installed")
    pytest.importorskip("moto", reason="the s3-test extra is not installed")
    boto3 = pytest.importorskip("boto3", reason="the s3 extra is not installed")

from tests.s3.server import MotoServer, s3_env  # noqa: E402

_buckets = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer() as running:
        yield running


@dataclass
class S3:
    server: MotoServer
    bucket: str

    @property
    def endpoint_url(self) -> str:
        return self.server.endpoint_url

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    @property
    def options(self) -> dict[str, object]:
        return {"endpoint_url": self.endpoint_url}

    def client(self) -> object:
        return boto3.client("s3", endpoint_url=self.endpoint_url)

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(  # type: ignore[attr-defined]
            Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture
def s3(server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    home = tmp_path / "aws"
    home.mkdir()
    for name, value in s3_env(home).items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    # A call that forgets the endpoint must fail here, never reach a public endpoint: port 9 on
    # loopback refuses connections.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    bucket = f"hcsfs-test-{next(_buckets)}"
    boto3.client("s3", endpoint_url=server.endpoint_url).create_bucket(Bucket=bucket)
    yield S3(server, bucket)


@pytest.fixture(scope="session")
def plate() -> MemoryPlate:
    """2 wells, 2 sites, 2 channels, 2 z: 16 planes of 48x64 uint16."""
    return memory_plate(plate_keys(("A01", "B03"), sites=2, channels=2, z=2), shape=(48, 64))
