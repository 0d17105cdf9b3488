"""Plates on object storage (``s3://bucket/path/plate.zarr``), read and written through obstore.

One :class:`S3Bucket` per bucket and set of options holds one client (one connection pool) and the
zarr-python ``ObjectStore`` over it; arrays are opened at their key inside that store, so every array of
a plate shares the pool. :class:`RemotePath` is the small part of :class:`pathlib.Path`'s interface the
OME-Zarr code uses (``/``, ``name``, ``read_bytes``, ``write_bytes``, ``is_file``), so metadata parsing
and writing are the same code for folders and buckets.

Why obstore (Rust ``object_store``) rather than fsspec/s3fs: measured against the same S3 server, zarr
reads through ``zarr.storage.ObjectStore`` took about half the time of ``FsspecStore`` over s3fs
(``benchmarks/bench_s3.py`` keeps measuring it). obstore alone reads only ``AWS_*`` environment
variables, so the standard AWS configuration (``AWS_PROFILE``/``profile=``, ``~/.aws/config``,
``AWS_ENDPOINT_URL``, SSO and instance roles) is resolved once with boto3 when it is installed, and its
credentials are refreshed through obstore's boto3 credential provider.
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hcsfs.errors import HcsfsError

__all__ = ["RemotePath", "S3Bucket", "S3Options", "is_url", "remote_path", "S3_OPTION_NAMES"]

SCHEMES = ("s3://",)
S3_OPTION_NAMES = ("anon", "endpoint_url", "region", "profile", "retries", "timeout")


def is_url(value: Any) -> bool:
    """Whether ``value`` names a plate on object storage (``s3://...``)."""
    return isinstance(value, str) and value.startswith(SCHEMES)


@dataclass(frozen=True, slots=True)
class S3Options:
    """How to reach the bucket. Unset values come from the standard AWS environment and config."""

    anon: bool = False
    """Unsigned requests (public buckets): no credentials looked up."""
    endpoint_url: str | None = None
    """Default: ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` or the profile's ``endpoint_url``."""
    region: str | None = None
    profile: str | None = None
    retries: int = 3
    """Retries of a failed request (connection errors, 5xx), with exponential backoff."""
    timeout: float = 30.0
    """Seconds for one request (connecting: at most 10 s of it)."""

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise HcsfsError(f"retries must be >= 0, not {self.retries}")
        if not self.timeout > 0:
            raise HcsfsError(f"timeout must be > 0 s, not {self.timeout}")

    @classmethod
    def pop_from(cls, options: dict[str, Any]) -> S3Options:
        """The S3 options among ``options`` (removed from it); ``None`` values mean "default"."""
        given = {k: options.pop(k) for k in S3_OPTION_NAMES if k in options}
        return cls(**{k: v for k, v in given.items() if v is not None})


def _resolve(options: S3Options) -> tuple[dict[str, Any], Any]:
    """``(S3Store config, credential provider)`` from the options and the AWS environment/config."""
    config: dict[str, Any] = {}
    if options.region:
        config["region"] = options.region
    if options.endpoint_url:
        config["endpoint"] = options.endpoint_url
    if options.anon:
        config["skip_signature"] = True
    try:
        import boto3
    except ImportError:  # obstore reads the AWS_* environment variables itself
        if options.profile:
            raise HcsfsError("profile= needs boto3 (pip install 'hcsfs[s3]')") from None
        return config, None
    session = boto3.Session(profile_name=options.profile)
    if "endpoint" not in config or "region" not in config:
        # Creating a client resolves AWS_ENDPOINT_URL(_S3), the profile's endpoint_url and region.
        client = session.client("s3", region_name=options.region)
        endpoint = client.meta.endpoint_url
        if "endpoint" not in config and endpoint and ".amazonaws.com" not in endpoint:
            config["endpoint"] = endpoint
        config.setdefault("region", client.meta.region_name or "us-east-1")
    if options.anon:
        return config, None
    from obstore.auth.boto3 import Boto3CredentialProvider

    try:
        return config, Boto3CredentialProvider(session)
    except ValueError:  # no credentials anywhere: let obstore try its own chain (instance roles...)
        return config, None


class S3Bucket:
    """One bucket's client (connection pool) and the zarr store over it."""

    _shared: dict[tuple[str, S3Options], S3Bucket] = {}
    _shared_lock = threading.Lock()

    def __init__(self, bucket: str, options: S3Options) -> None:
        from obstore.store import S3Store
        from zarr.storage import ObjectStore

        self.name = bucket
        self.options = options
        config, credentials = _resolve(options)
        endpoint = str(config.get("endpoint") or "")
        client_options = {
            "timeout": f"{options.timeout}s",
            "connect_timeout": f"{min(options.timeout, 10.0)}s",
            "allow_http": "true" if endpoint.startswith("http://") else "false",
            "pool_max_idle_per_host": "64",
        }
        retry = {
            "max_retries": options.retries,
            "retry_timeout": timedelta(seconds=options.timeout * (options.retries + 1)),
            "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5),
                        "base": 2.0},
        }
        self.store = S3Store(bucket, config=config, client_options=client_options,  # type: ignore[arg-type]
                             retry_config=retry, credential_provider=credentials)  # type: ignore[arg-type]
        self.zarr_store = ObjectStore(self.store, read_only=False)

    @classmethod
    def shared(cls, bucket: str, options: S3Options) -> S3Bucket:
        """One client per (bucket, options) in this process: sources, sinks and readers share it."""
        with cls._shared_lock:
            found = cls._shared.get((bucket, options))
            if found is None:
                found = cls._shared[(bucket, options)] = cls(bucket, options)
            return found

    # Blocking object operations (obstore runs them on its own runtime, without the GIL).

    def get(self, key: str) -> bytes:
        import obstore

        return bytes(obstore.get(self.store, key).bytes())

    def put(self, key: str, data: bytes) -> None:
        import obstore

        obstore.put(self.store, key, data)

    def head(self, key: str) -> dict[str, Any]:
        import obstore

        return dict(obstore.head(self.store, key))

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix/``; returns how many."""
        import obstore

        keys = [m["path"] for batch in obstore.list(self.store, prefix=prefix.rstrip("/") + "/")
                for m in batch]
        for start in range(0, len(keys), 1000):
            obstore.delete(self.store, keys[start:start + 1000])
        return len(keys)


def _not_found(exc: BaseException) -> bool:
    from obstore.exceptions import NotFoundError

    return isinstance(exc, (NotFoundError, FileNotFoundError))


@dataclass(frozen=True, slots=True)
class RemotePath:
    """``s3://bucket/key`` with the part of ``pathlib.Path`` the OME-Zarr code needs."""

    bucket: S3Bucket = field(compare=False, hash=False, repr=False)
    bucket_name: str
    key: str
    options: S3Options = field(compare=False, repr=False)

    def __truediv__(self, other: str) -> RemotePath:
        key = "/".join(p for p in (*self.key.split("/"), *str(other).split("/")) if p)
        return RemotePath(self.bucket, self.bucket_name, key, self.options)

    def __str__(self) -> str:
        return f"s3://{self.bucket_name}/{self.key}"

    def __reduce__(self) -> tuple[Any, ...]:  # sent to Dask workers as URL + options
        return remote_path, (str(self), self.options)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> RemotePath:
        return RemotePath(self.bucket, self.bucket_name, self.key.rpartition("/")[0], self.options)

    @property
    def url(self) -> str:
        return str(self)

    def read_bytes(self) -> bytes:
        """The object's bytes; ``FileNotFoundError`` (filename: this URL) when it does not exist."""
        try:
            return self.bucket.get(self.key)
        except Exception as exc:
            if _not_found(exc):
                raise FileNotFoundError(errno.ENOENT, "no such object", str(self)) from None
            raise OSError(errno.EIO, f"{self}: {type(exc).__name__}: {exc}") from exc

    def write_bytes(self, data: bytes) -> None:
        self.bucket.put(self.key, data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def is_file(self) -> bool:
        try:
            self.bucket.head(self.key)
        except Exception as exc:
            if _not_found(exc):
                return False
            raise OSError(errno.EIO, f"{self}: {type(exc).__name__}: {exc}") from exc
        return True

    def exists(self) -> bool:
        return self.is_file()

    def mtime_ns(self) -> int:
        modified = self.head_info().get("last_modified")
        return int(modified.timestamp() * 1e9) if modified is not None else 0

    def head_info(self) -> dict[str, Any]:
        try:
            return self.bucket.head(self.key)
        except Exception as exc:
            if _not_found(exc):
                raise FileNotFoundError(errno.ENOENT, "no such object", str(self)) from None
            raise OSError(errno.EIO, f"{self}: {type(exc).__name__}: {exc}") from exc

    def zarr_store(self) -> Any:
        """A zarr ``StorePath`` for the node at this key (arrays share the bucket's client)."""
        from zarr.storage import StorePath

        return StorePath(self.bucket.zarr_store, self.key)

    def unlink(self, missing_ok: bool = False) -> None:
        import obstore

        if not missing_ok and not self.is_file():
            raise FileNotFoundError(errno.ENOENT, "no such object", str(self))
        obstore.delete(self.bucket.store, self.key)

    def delete_tree(self) -> int:
        return self.bucket.delete_prefix(self.key)


def remote_path(url: str, options: S3Options | None = None) -> RemotePath:
    """The :class:`RemotePath` of an ``s3://bucket/key`` URL."""
    if not is_url(url):
        raise HcsfsError(f"{url!r} is not an s3:// URL")
    bucket, _, key = url.split("://", 1)[1].partition("/")
    if not bucket:
        raise HcsfsError(f"{url!r} names no bucket")
    options = options or S3Options()
    try:
        client = S3Bucket.shared(bucket, options)
    except ImportError as exc:
        raise HcsfsError(f"s3:// plates need obstore (pip install 'hcsfs[s3]'): {exc}") from exc
    return RemotePath(client, bucket, key.strip("/"), options)
