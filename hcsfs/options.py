"""Names of the options a plate source takes, shared by ``hcsfs mount`` and :func:`hcsfs.mounted` (FUSE-free).

Mount options proper are the fields of :class:`hcsfs.fs.mount.MountOptions`, the one type both the CLI
and ``hcsfs.mounted()`` build; what is not a mount option goes to the source (``open_plate``).
"""

from __future__ import annotations

__all__ = ["S3_OPTIONS", "SOURCE_OPTIONS"]

S3_OPTIONS = ("anon", "endpoint_url", "region", "profile", "retries", "timeout", "disk_cache",
              "disk_cache_size")
"""Options of plates on object storage; they also travel to Dask workers (``MountOptions.s3_options``)."""

SOURCE_OPTIONS = ("strict", "site_order", "acquisition", "zarr_impl", *S3_OPTIONS)
"""Options ``open_plate`` passes to the source, beyond ``format`` and ``cache_bytes``."""
