"""Mount lifecycle: check the mountpoint, mount, serve until told to stop, always unmount.

:class:`MountSession` runs one mount in the calling thread (the CLI's foreground mode) or in a
background thread (:func:`mounted`, for notebooks and tests). pyfuse3 keeps one session per process, so
one process serves one mount at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import hashlib
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
import pyfuse3
import trio

from hcsfs.cache import DEFAULT_CACHE_BYTES, parse_byte_size
from hcsfs.errors import MountError
from hcsfs.fs.mounttable import MountState, find_mount, probe_mountpoint, unmount
from hcsfs.fs.operations import PlateOperations
from hcsfs.fs.vtree import VirtualTree
from hcsfs.options import S3_OPTIONS, SOURCE_OPTIONS
from hcsfs.sources import PlateSource, open_plate
from hcsfs.sources.views import SelectedSource, parse_selection

if TYPE_CHECKING:
    from hcsfs.pipelines import PipelineManager

__all__ = ["MountOptions", "MountSession", "mounted", "check_mountpoint", "Mounted",
           "default_outputs_dir"]

log = logging.getLogger("hcsfs.mount")
_ONE_SESSION = threading.Lock()


@dataclass(frozen=True, slots=True)
class MountOptions:
    """How to mount: cache budget, pipelines, and kernel-level options."""

    cache_bytes: int = DEFAULT_CACHE_BYTES
    allow_other: bool = False
    debug_fuse: bool = False
    xattrs: bool = False
    """``user.hcs.*`` attributes. Off by default: with them ``ls -l`` costs two uncached kernel requests
    per file (issue 14: 100,000 planes 74x tmpfs, 10.7x without); ``/.hcsfs/planes.csv`` has the same
    metadata."""
    """``user.hcs.*`` attributes; without them ``ls -l`` costs two fewer requests per file."""
    pipelines: bool = True
    outputs: Path | None = None
    """Where pipeline outputs persist; default: per plate under the user's data dir (a temporary
    folder for plates that have no path, such as a MemoryPlate)."""
    plugins: tuple[str, ...] = ()
    """Modules whose ``register(registry)`` adds pipeline functions (the mount's owner trusts them)."""
    models: Path | None = None
    """The folder of trained models ``func: model`` may name (the mount's owner trusts them)."""
    select: tuple[str, ...] = ()
    """Show only these planes (``channel=1,t=1-10``; see :func:`hcsfs.sources.views.parse_selection`)."""
    scheduler: str | None = None
    """A Dask scheduler address: pipeline runs execute there (docs/distributed.md)."""
    allowed_schedulers: tuple[str, ...] = ()
    shared_outputs: str | None = None
    """Where Dask workers write outputs (a folder all of them see, or ``s3://``)."""
    s3_options: dict[str, Any] | None = None

    uid: int | None = None
    """Owner shown for the plate's files and folders (default: the mounting user)."""
    gid: int | None = None
    umask: int | None = None
    """Mode bits taken away from the plate's files (0444) and folders (0555); default 022. The
    ``.pipelines/`` folder stays the mounting user's, writable by nobody else."""

    @classmethod
    def build(cls, base: MountOptions | None = None, **keywords: Any) -> MountOptions:
        """``base`` (default: the defaults) with ``keywords`` replaced; what :func:`mounted` accepts.

        Every field is a keyword (``allow_other=True, uid=1000, umask=0o027,
        allowed_schedulers=("tcp://h:8786",)``), plus ``cache_size`` ("2G" or bytes) for
        ``cache_bytes``. Paths may be strings, sequences become tuples, ``select`` may be one string.
        An unknown name is a ``TypeError``.
        """
        unknown = sorted(set(keywords) - MOUNT_KEYWORDS)
        if unknown:
            raise TypeError(f"unknown mount option(s): {', '.join(unknown)}")
        if "cache_size" in keywords:
            keywords["cache_bytes"] = parse_byte_size(keywords.pop("cache_size"))
        for name in ("outputs", "models"):
            if keywords.get(name) is not None:
                keywords[name] = Path(keywords[name])
        for name in ("plugins", "select", "allowed_schedulers"):
            if name in keywords:
                value = keywords[name]
                keywords[name] = (value,) if isinstance(value, str) else tuple(value)
        return dataclasses.replace(base or cls(), **keywords)

    def fuse_options(self) -> set[str]:
        options = set(pyfuse3.default_options) | {"fsname=hcsfs", "subtype=hcsfs", "noatime"}
        if self.allow_other:
            options.add("allow_other")
        if self.debug_fuse:
            options.add("debug")
        return options


MOUNT_KEYWORDS = frozenset({f.name for f in dataclasses.fields(MountOptions)} | {"cache_size"})
"""The keywords of :func:`mounted` (and :meth:`MountOptions.build`) that are mount options."""


def default_outputs_dir(plate: Path | str) -> Path:
    """``~/.local/share/hcsfs/outputs/<plate name>-<hash of its absolute path or URL>``: local, never
    inside the plate (nor its bucket)."""
    location = plate if isinstance(plate, str) and "://" in plate else str(Path(plate).resolve())
    name = location.rstrip("/").rsplit("/", 1)[-1] or "plate"
    digest = hashlib.sha256(location.encode()).hexdigest()[:12]
    return Path(platformdirs.user_data_dir("hcsfs")) / "outputs" / f"{name}-{digest}"


def check_mountpoint(mountpoint: str | os.PathLike[str]) -> Path:
    """Raise :class:`MountError` with the reason and the fix if ``mountpoint`` cannot be mounted on."""
    if not os.path.exists("/dev/fuse"):
        raise MountError("/dev/fuse does not exist: load the fuse module (modprobe fuse) or, in a "
                         "container, pass --device /dev/fuse")
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise MountError("/dev/fuse is not readable and writable by this user")
    path = Path(mountpoint).absolute()
    state = probe_mountpoint(path)
    if state == MountState.STALE:
        raise MountError(f"{path} is a stale mount left by a dead daemon (Transport endpoint is "
                         f"not connected): clear it with `hcsfs unmount {path}`")
    if state == MountState.HUNG:
        raise MountError(f"{path} is a mount that does not answer: `hcsfs unmount {path}` clears it")
    if state == MountState.LIVE:
        raise MountError(f"{path} is already a mountpoint: unmount it first (`hcsfs unmount {path}`)")
    if not path.exists():
        raise MountError(f"mountpoint {path} does not exist (create it with mkdir)")
    if not path.is_dir():
        raise MountError(f"mountpoint {path} is not a directory")
    if any(path.iterdir()):
        raise MountError(f"mountpoint {path} is not empty")
    return path


class MountSession:
    """One mount of one source; :meth:`run` blocks until unmounted or :meth:`stop` is called."""

    def __init__(self, source: PlateSource, mountpoint: str | os.PathLike[str],
                 options: MountOptions = MountOptions(), *, plate_path: Path | str | None = None) -> None:
        if options.select:
            source = SelectedSource(source, parse_selection(options.select))
        self.source = source
        self.mountpoint = Path(mountpoint).absolute()
        self.options = options
        self.plate_path = plate_path
        self.operations: PlateOperations | None = None
        self.manager: PipelineManager | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stopping = threading.Event()

    def run(self, on_ready: Callable[[], None] | None = None, *, handle_signals: bool = False) -> None:
        """Mount, serve, unmount. ``on_ready`` is called once the mount answers."""
        if not _ONE_SESSION.acquire(blocking=False):
            raise MountError("this process already serves a mount (pyfuse3 allows one)")
        try:
            check_mountpoint(self.mountpoint)
            if handle_signals:
                # `kill -USR1 <pid>` writes every thread's stack to stderr (the daemon's log file), also
                # when the trio loop is stuck: the torture suite's hang watchdog relies on it.
                faulthandler.register(signal.SIGUSR1, all_threads=True)
            with contextlib.ExitStack() as cleanup:
                self.manager = self._pipeline_manager(cleanup)
                tree = VirtualTree(
                    self.source, cache_bytes=self.options.cache_bytes, xattrs=self.options.xattrs,
                    manager=self.manager, uid=self.options.uid, gid=self.options.gid,
                    umask=self.options.umask, mountpoint=self.mountpoint)
                self.operations = PlateOperations(tree)
                try:
                    pyfuse3.init(self.operations, str(self.mountpoint), self.options.fuse_options())
                except RuntimeError as exc:
                    raise MountError(f"cannot mount on {self.mountpoint}: {exc}") from exc
                log.info("mounted %s (%s) on %s", self.source.describe().source,
                         self.source.format_name, self.mountpoint)
                invalidator = tree.invalidator
                try:
                    if invalidator is not None:
                        invalidator.start()
                    trio.run(self._main, on_ready, handle_signals)
                finally:
                    # Order matters: no kernel notifications once serving stopped, runs cancelled
                    # before the session goes, and the session closed (unmounted) last.
                    if invalidator is not None:
                        invalidator.stop()
                    if self.manager is not None:
                        self.manager.close()
                    tree.close()
                    pyfuse3.close(unmount=True)
                    self._clear_dead_mount()
                    log.info("unmounted %s", self.mountpoint)
        finally:
            _ONE_SESSION.release()

    def _clear_dead_mount(self) -> None:
        """libfuse skips unmounting when its connection was aborted (``/sys/fs/fuse/connections``):
        the kernel then keeps a dead mount. Clear it, so no stale mountpoint outlives the session."""
        if find_mount(self.mountpoint) is not None:
            with contextlib.suppress(MountError):
                log.info("%s: %s", self.mountpoint, unmount(self.mountpoint))

    def _pipeline_manager(self, cleanup: contextlib.ExitStack) -> PipelineManager | None:
        if not self.options.pipelines:
            return None
        from hcsfs.pipelines import PipelineManager, default_registry, load_plugins

        outputs = self.options.outputs
        if outputs is None:
            if self.plate_path is None:
                outputs = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="hcsfs-outputs-")))
            else:
                outputs = default_outputs_dir(self.plate_path)
        outputs.mkdir(parents=True, exist_ok=True)
        registry = default_registry()
        load_plugins(registry, self.options.plugins)
        from hcsfs.pipelines.models import use_models

        use_models(registry, self.options.models)

        def changed(run: str) -> None:
            control = self.operations.tree.control if self.operations is not None else None
            if control is not None:
                control.run_changed(run)

        log.info("pipeline outputs go to %s", outputs)
        return PipelineManager(
            self.source, outputs_dir=outputs, registry=registry, on_change=changed,
            scheduler=self.options.scheduler, allowed_schedulers=self.options.allowed_schedulers,
            shared_outputs=self.options.shared_outputs, s3_options=self.options.s3_options)

    async def _main(self, on_ready: Callable[[], None] | None, handle_signals: bool) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._serve, nursery)
            if handle_signals:
                nursery.start_soon(self._stop_on_signal)
            # The mount answers once a stat of its root comes back through the loop started above.
            await trio.to_thread.run_sync(os.stat, self.mountpoint)
            if self._stopping.is_set():
                pyfuse3.terminate()
            elif on_ready is not None:
                on_ready()

    async def _serve(self, nursery: trio.Nursery) -> None:
        try:
            await pyfuse3.main()
        finally:
            nursery.cancel_scope.cancel()

    async def _stop_on_signal(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for signum in signals:
                log.info("received %s: unmounting", signal.Signals(signum).name)
                pyfuse3.terminate()
                return

    def stop(self) -> None:
        """Ask the serving loop to end (from any thread); :meth:`run` then unmounts."""
        self._stopping.set()
        token = self._token
        if token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(pyfuse3.terminate, trio_token=token)


@dataclass(frozen=True, slots=True)
class Mounted:
    """What :func:`mounted` yields."""

    path: Path
    source: PlateSource
    session: MountSession

    def __fspath__(self) -> str:
        return str(self.path)


@contextlib.contextmanager
def mounted(
    source: str | os.PathLike[str] | PlateSource,
    mountpoint: str | os.PathLike[str],
    options: MountOptions | None = None,
    *,
    format: str | None = None,
    ready_timeout: float = 60.0,
    **keywords: Any,
) -> Iterator[Mounted]:
    """Mount ``source`` (a path or a PlateSource) on ``mountpoint`` in a background thread.

    The mount options are :class:`MountOptions`, the type ``hcsfs mount`` builds from its flags: give
    ``options=``, or any of its fields as keywords (``cache_size="2G"``, ``pipelines=False``,
    ``outputs=...``, ``allow_other=True``, ``uid=``, ``gid=``, ``umask=0o027``, ``select="channel=1"``,
    ``scheduler=``, ``allowed_schedulers=(...)``, ...; :meth:`MountOptions.build`). The other keywords
    go to the source, as ``hcsfs mount``'s source flags do (``strict``, ``site_order``, ``acquisition``,
    ``zarr_impl``, and for ``s3://`` plates ``anon``, ``endpoint_url``, ...). Unmounts on exit, also
    when the body raises.
    """
    mount_keywords = {k: keywords.pop(k) for k in list(keywords) if k in MOUNT_KEYWORDS}
    unknown = sorted(set(keywords) - set(SOURCE_OPTIONS))
    if unknown:  # a PlateSource ignores source options: a misspelt mount option must not pass silently
        raise TypeError(f"mounted() got unknown option(s) {', '.join(unknown)}; mount options: "
                        f"{', '.join(sorted(MOUNT_KEYWORDS))}; source options: {', '.join(SOURCE_OPTIONS)}")
    s3_options = {k: v for k, v in keywords.items() if k in S3_OPTIONS}
    if s3_options and "s3_options" not in mount_keywords:
        mount_keywords["s3_options"] = s3_options
    options = MountOptions.build(options, **mount_keywords)
    plate = open_plate(source, format=format, cache_bytes=options.cache_bytes, **keywords)
    plate_path: Path | str | None = None
    if not isinstance(source, PlateSource):
        plate_path = source if isinstance(source, str) and "://" in source else Path(source)
    session = MountSession(plate, mountpoint, options, plate_path=plate_path)
    ready = threading.Event()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            session.run(on_ready=ready.set)
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=serve, name=f"hcsfs-mount {mountpoint}", daemon=True)
    thread.start()
    if not ready.wait(ready_timeout):
        session.stop()
        raise MountError(f"mount on {mountpoint} did not answer within {ready_timeout} s")
    if failure:
        thread.join()
        raise failure[0]
    try:
        yield Mounted(session.mountpoint, plate, session)
    finally:
        session.stop()
        thread.join(30)
        if thread.is_alive():
            log.error("mount thread did not end; unmounting %s lazily", session.mountpoint)
            with contextlib.suppress(MountError):
                unmount(session.mountpoint)
            thread.join(10)
        if failure:
            raise failure[0]
