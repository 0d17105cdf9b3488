"""The one place where errors become errno values for the kernel.

Handlers raise hcsfs errors or ``OSError``; :func:`fuse_errors` turns them into ``FUSEError`` with the
matching errno, and anything unexpected into a logged ``EIO`` (the mount keeps serving).
"""

from __future__ import annotations

import errno
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from hcsfs.errors import HcsfsError, PlaneGoneError, PlaneNotFoundError, PlaneReadError, SpecError
from hcsfs.fs.answers import Refusal

__all__ = ["fuse_errors", "errno_for"]

log = logging.getLogger("hcsfs.fs")

P = ParamSpec("P")
R = TypeVar("R")


def errno_for(exc: BaseException) -> int:
    """The errno an exception means to a FUSE client."""
    if isinstance(exc, pyfuse3.FUSEError):
        return exc.errno
    if isinstance(exc, PlaneNotFoundError):
        return errno.ENOENT
    if isinstance(exc, PlaneReadError):
        return errno.EIO
    if isinstance(exc, SpecError):
        return errno.EINVAL
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return errno.EIO


def fuse_errors(
    handler: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Decorate an ``async`` handler so that it raises only ``FUSEError``."""

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await handler(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except Refusal as exc:  # an expected "no": not worth a log line
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except PlaneGoneError as exc:
            log.warning("%s: %s", handler.__name__, exc)
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        except PlaneNotFoundError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        except (HcsfsError, OSError) as exc:
            log.warning("%s: %s", handler.__name__, exc)
            raise pyfuse3.FUSEError(errno_for(exc)) from None
        except Exception:
            log.exception("unexpected error in %s", handler.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper
