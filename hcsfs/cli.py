"""The ``hcsfs`` command: parse arguments, call the library, print. Errors are one line (``--debug``
shows the traceback)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from hcsfs import __version__
from hcsfs.cache import DEFAULT_CACHE_BYTES, parse_byte_size
from hcsfs.errors import HcsfsError
from hcsfs.options import S3_OPTIONS as _S3_OPTIONS
from hcsfs.options import SOURCE_OPTIONS as _SOURCE_OPTIONS


class _PlateLocation(click.ParamType):
    """A plate folder or store on disk (must exist), or an object-storage URL (``s3://...``)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        if isinstance(value, str) and "://" in value:
            return value
        path = Path(value)
        if not path.exists():
            self.fail(f"{value!r} does not exist", param, ctx)
        return path


PLATE = _PlateLocation()


def _location(value: Path | str) -> str:
    return str(value.absolute()) if isinstance(value, Path) else value


def _s3_options(command: Any) -> Any:
    """Options for plates on object storage (``s3://``), shared by mount, info and convert."""
    for decorator in reversed([
        click.option("--anon", is_flag=True, default=None, help="S3: public bucket, no credentials."),
        click.option("--endpoint-url", metavar="URL", help="S3: endpoint (default: AWS config/env)."),
        click.option("--region", help="S3: region."),
        click.option("--profile", help="S3: AWS profile."),
        click.option("--retries", type=int, help="S3: retries per request."),
        click.option("--timeout", type=float, help="S3: seconds per request."),
        click.option("--disk-cache", type=click.Path(file_okay=False), help="S3: on-disk chunk cache."),
        click.option("--disk-cache-size", callback=_optional_byte_size, help="S3: its budget (10G)."),
    ]):
        command = decorator(command)
    return command


class _Group(click.Group):
    """Turns hcsfs errors into one line and a non-zero exit, unless ``--debug``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `hcsfs functions | head`: the reader left, as for any Unix tool
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
            sys.exit(141)
        except (HcsfsError, OSError) as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"hcsfs: error: {exc}", err=True)
            sys.exit(1)


def _selection(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    from hcsfs.sources.views import parse_selection

    try:
        parse_selection(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _optional_byte_size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    return None if value is None else _byte_size(ctx, param, value)


def _byte_size(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return parse_byte_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hcsfs")
@click.option("--debug", is_flag=True, help="Log debug messages and show tracebacks.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Mount a high-content-screening plate as a flat folder of TIFF planes."""
    ctx.ensure_object(dict)["debug"] = debug


def _source_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in _SOURCE_OPTIONS and v not in (None, False)}


@main.command()
@click.argument("source", type=PLATE)
@click.argument("mountpoint", type=click.Path(path_type=Path))
@click.option("-f", "--foreground", is_flag=True, help="Stay attached (for systemd); log to stderr too.")
@click.option("--format", "format_", metavar="NAME", help="Skip detection: tiff-folder, ...")
@click.option("--cache-size", default=str(DEFAULT_CACHE_BYTES), callback=_byte_size,
              show_default="1G", help="Budget for decoded planes and chunks (512M, 2G, ...).")
@click.option("--log-file", type=click.Path(path_type=Path),
              help="Default: ~/.local/state/hcsfs/logs/mount-<mountpoint>.log")
@click.option("--allow-other", is_flag=True, help="Let other users see the mount (user_allow_other).")
@click.option("--uid", type=int, help="Owner shown for the plate's files and folders (default: you).")
@click.option("--gid", type=int, help="Group shown for the plate's files and folders.")
@click.option("--umask", type=lambda v: int(v, 8), metavar="OCTAL",
              help="Bits removed from files (0444) and folders (0555); default 022.")
@click.option("--xattrs/--no-xattrs", default=False, show_default=True,
              help="user.hcs.* attributes (off: ls -l of huge plates ~7x faster; /.hcsfs/planes.csv "
                   "has the same metadata).")
@click.option("--pipelines/--no-pipelines", default=True, show_default=True,
              help="The .pipelines/ control folder.")
@click.option("--outputs", type=click.Path(file_okay=False, path_type=Path),
              help="Where pipeline outputs persist (default: per plate under ~/.local/share/hcsfs).")
@click.option("--plugins", multiple=True, metavar="MODULE",
              help="Python module whose register(registry) adds pipeline functions (trusted code).")
@click.option("--models", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR",
              help="Folder of trained models (TorchScript, ONNX) that func: model may name (trusted).")
@click.option("--select", multiple=True, metavar="AXIS=VALUES,...", callback=_selection,
              help="Show only these planes, e.g. channel=1,t=1-10 or well=A01-B12+C03.")
@click.option("--strict", is_flag=True, default=None,
              help="A plane the index lists but storage lacks is an error.")
@click.option("--site-order", type=click.Choice(["field", "raster"]),
              help="Phenix: number sites by field ID or position.")
@click.option("--acquisition", help="OME-Zarr: serve only this acquisition ID.")
@click.option("--zarr-impl", type=click.Choice(["zarr-python", "tensorstore"]), help="OME-Zarr reader.")
@_s3_options
@click.option("--scheduler", metavar="ADDRESS", help="Run pipelines on this Dask scheduler.")
@click.option("--allow-scheduler", multiple=True, metavar="ADDRESS",
              help="Another Dask scheduler a spec may name.")
@click.option("--shared-outputs", metavar="DIR|URL",
              help="Where Dask workers write outputs (a shared folder or s3://).")
@click.option("--ready-fd", type=int, hidden=True)
@click.pass_context
def mount(ctx: click.Context, source: Path | str, mountpoint: Path, foreground: bool, format_: str | None,
          cache_size: int, log_file: Path | None, allow_other: bool, xattrs: bool, pipelines: bool,
          outputs: Path | None, plugins: tuple[str, ...], models: Path | None, select: tuple[str, ...],
          scheduler: str | None, allow_scheduler: tuple[str, ...], shared_outputs: str | None,
          uid: int | None, gid: int | None, umask: int | None, ready_fd: int | None,
          **options: Any) -> None:
    """Mount SOURCE (a plate folder or store) on MOUNTPOINT; returns once the mount answers."""
    from hcsfs.fs.daemon import (
        report_failure,
        report_ready,
        return_large_buffers_to_the_system,
        start_daemon,
    )
    from hcsfs.fs.mount import MountOptions, MountSession, check_mountpoint
    from hcsfs.logconfig import configure_logging, default_log_file
    from hcsfs.sources import open_plate

    debug = bool(ctx.obj.get("debug"))
    log_file = (log_file or default_log_file(mountpoint)).absolute()
    source_options = _source_options(options)
    if not foreground:
        configure_logging(log_file=None, stderr=False, debug=False)
        check_mountpoint(mountpoint)
        if isinstance(source, Path) and format_ is None:
            from hcsfs.sources import detect_format

            detect_format(source)  # "not a plate" here; the daemon opens it once and reports the rest
        elif not isinstance(source, Path):
            open_plate(source, format=format_, **source_options).close()  # fail here, not in the log
        args = ["--debug"] if debug else []
        args += ["mount", _location(source), str(mountpoint.absolute()), "--foreground",
                 "--cache-size", str(cache_size), "--log-file", str(log_file)]
        args += ["--format", format_] if format_ else []
        args += ["--allow-other"] if allow_other else []
        args += ["--xattrs"] if xattrs else ["--no-xattrs"]
        args += [] if pipelines else ["--no-pipelines"]
        args += ["--outputs", str(outputs.absolute())] if outputs else []
        for module in plugins:
            args += ["--plugins", module]
        args += ["--models", str(models.absolute())] if models else []
        for terms in select:
            args += ["--select", terms]
        args += ["--scheduler", scheduler] if scheduler else []
        for address in allow_scheduler:
            args += ["--allow-scheduler", address]
        args += ["--shared-outputs", shared_outputs] if shared_outputs else []
        args += ["--uid", str(uid)] if uid is not None else []
        args += ["--gid", str(gid)] if gid is not None else []
        args += ["--umask", f"{umask:o}"] if umask is not None else []
        for name, value in source_options.items():
            flag = "--" + name.replace("_", "-")
            args += [flag] if value is True else [flag, str(value)]
        pid = start_daemon(args, log_file)
        click.echo(f"hcsfs: mounted {source} on {mountpoint} (pid {pid}, log {log_file})")
        return
    configure_logging(log_file=log_file, stderr=ready_fd is None, debug=debug)
    return_large_buffers_to_the_system()
    try:
        plate = open_plate(source, format=format_, cache_bytes=cache_size, **source_options)
        options_ = MountOptions(
            cache_bytes=cache_size, allow_other=allow_other, xattrs=xattrs, pipelines=pipelines,
            outputs=outputs, plugins=plugins, models=models, select=select, scheduler=scheduler,
            allowed_schedulers=allow_scheduler, shared_outputs=shared_outputs,
            uid=uid, gid=gid, umask=umask,
            s3_options={k: v for k, v in source_options.items() if k in _S3_OPTIONS})
        session = MountSession(plate, mountpoint, options_, plate_path=source)
        session.run(on_ready=lambda: report_ready(ready_fd), handle_signals=True)
    except HcsfsError as exc:
        report_failure(ready_fd, str(exc))
        raise


@main.command()
@click.option("--frameworks", is_flag=True,
              help="Also import each installed framework in a child process and list its devices (slow).")
def doctor(frameworks: bool) -> None:
    """Check FUSE, stale mounts, optional frameworks and GPUs; say how to fix each problem."""
    from hcsfs.doctor import exit_status, format_checks, run_checks

    checks = run_checks(frameworks=frameworks)
    for line in format_checks(checks):
        click.echo(line)
    sys.exit(exit_status(checks))


@main.command()
@click.argument("mountpoint", type=click.Path(path_type=Path))
def unmount(mountpoint: Path) -> None:
    """Unmount MOUNTPOINT, also a stale mount left by a killed daemon."""
    from hcsfs.fs.mounttable import unmount as do_unmount

    click.echo(f"hcsfs: {mountpoint}: {do_unmount(mountpoint)}")


@main.command()
@click.argument("source", type=PLATE)
@click.option("--format", "format_", metavar="NAME", help="Skip detection.")
@click.option("--json", "as_json", is_flag=True, help="Print plate.json instead of a summary.")
@_s3_options
def info(source: Path | str, format_: str | None, as_json: bool, **options: Any) -> None:
    """Describe a plate: format, wells, sites, channels, z, t, dtype, plane shape, plane count."""
    from hcsfs.logconfig import configure_logging
    from hcsfs.sources import open_plate, plate_summary

    configure_logging(log_file=None, stderr=False, debug=False)
    plate = open_plate(source, format=format_, **_source_options(options))
    try:
        summary = plate_summary(plate)
    finally:
        plate.close()
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    channels = ", ".join(
        f"w{c['index']}" + (f" ({c['name']})" if c["name"] else "") for c in summary["channels"]
    )
    wells = summary["wells"]
    pixel = summary["pixel_size_um"]
    rows = [
        ("format", summary["format"]),
        ("source", summary["source"]),
        ("wells", f"{len(wells)}" + (f" ({wells[0]} .. {wells[-1]})" if wells else "")),
        ("sites", _span(summary["sites"])),
        ("channels", channels or "-"),
        ("z", _span(summary["z"])),
        ("t", _span(summary["t"])),
        ("dtype", summary["dtype"] or "-"),
        ("plane shape", " x ".join(map(str, summary["shape"] or [])) or "-"),
        ("pixel size", f"{pixel} um" if pixel else "unknown"),
        ("planes", summary["planes"]),
    ]
    if summary["skipped"]:
        rows.append(("skipped", f"{len(summary['skipped'])} entries (see --json)"))
    if summary["missing"]:
        rows.append(("missing", f"{len(summary['missing'])} planes (see --json)"))
    for label, value in rows:
        click.echo(f"{label:>12}: {value}")


def _span(values: list[Any]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"1 ({values[0]})"
    return f"{len(values)} ({values[0]} .. {values[-1]})"


@main.command()
@click.argument("source", type=PLATE)
@click.argument("destination")
@click.option("--format", "format_", metavar="NAME", help="Skip detection of SOURCE's format.")
@click.option("--ngff", type=click.Choice(["0.5", "0.4"]), default="0.5", show_default=True,
              help="OME-Zarr version (0.4 = zarr v2, for older readers).")
@click.option("--chunks", type=click.Choice(["plane", "well"]), default="plane", show_default=True,
              help="One chunk per 2-D plane, or per field image.")
@click.option("--shard", is_flag=True, help="Shard each field image into one file (zarr v3 only).")
@click.option("--compressor", type=click.Choice(["zstd", "lz4", "blosclz4", "none"]), default="zstd",
              show_default=True)
@click.option("--level", type=int, help="Compression level.")
@click.option("--overwrite", is_flag=True, help="Replace DESTINATION if it exists.")
@_s3_options
def convert(source: Path | str, destination: str, format_: str | None, ngff: str, chunks: str,
            shard: bool, compressor: str, level: int | None, overwrite: bool, **options: Any) -> None:
    """Write the plate at SOURCE as an OME-Zarr HCS plate at DESTINATION."""
    from hcsfs.convert import convert_plate
    from hcsfs.logconfig import configure_logging
    from hcsfs.progress import Progress

    configure_logging(log_file=None, stderr=True, debug=False)
    label = source.name if isinstance(source, Path) else source
    chosen = _source_options(options)
    s3 = {k: v for k, v in chosen.items() if k in _S3_OPTIONS}
    # The S3 options apply to whichever side is on object storage.
    open_options = chosen if isinstance(source, str) else {k: v for k, v in chosen.items() if k not in s3}
    if "://" in destination:
        from hcsfs.convert import DST_S3_OPTIONS

        open_options.update({f"dst_{k}": v for k, v in s3.items() if f"dst_{k}" in DST_S3_OPTIONS})
    with Progress(f"converting {label}") as progress:
        result = convert_plate(source, destination, format=format_, ngff=ngff, chunks=chunks,
                               shard="well" if shard else None, compressor=compressor, level=level,
                               overwrite=overwrite, progress=progress.update, **open_options)
    click.echo(f"hcsfs: wrote {result.planes} planes ({result.wells} wells, {result.fields} fields) "
               f"to {result.path}")


@main.command()
@click.argument("mountpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait", is_flag=True, help="Follow the run to its end; exit 0 only if it succeeded.")
@click.option("--timeout", type=float, help="With --wait: give up after this many seconds.")
@click.option("--resume", is_flag=True, help="Continue the interrupted run of SPEC (resume: true).")
def run(mountpoint: Path, spec: Path, wait: bool, timeout: float | None, resume: bool) -> None:
    """Start the pipeline SPEC on the plate mounted at MOUNTPOINT (copies it into .pipelines/).

    With --wait the exit status is 0 when the run is done without errors, 1 when it failed, 2 when it
    was cancelled, 3 when it finished with failed units, 4 on timeout, 5 when it stays interrupted
    (a refused --resume says why).
    """
    from hcsfs.runs import follow_run, submit_spec

    name = submit_spec(mountpoint, spec, resume=resume)
    click.echo(f"hcsfs: started {name}: status in {mountpoint / '.pipelines' / (name + '.status')}")
    if wait:
        sys.exit(follow_run(mountpoint, name, timeout=timeout))


@main.command()
@click.argument("source", type=PLATE)
@click.argument("spec", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A new or empty folder for the run (tables/, rois/, heatmaps/, data/, status.json).")
@click.option("--format", "format_", metavar="NAME", help="Skip detection of SOURCE's format.")
@click.option("--scheduler", metavar="ADDRESS", help="Run the units on this Dask scheduler.")
@click.option("--plugins", multiple=True, metavar="MODULE",
              help="Python module whose register(registry) adds pipeline functions (repeatable).")
@click.option("--models", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR",
              help="Folder of trained models (TorchScript, ONNX) that func: model may name (trusted).")
@click.option("--workers", type=click.IntRange(1, 256), help="Units computed at once (default: up to 4).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out (only missing units).")
@_s3_options
def process(source: Path | str, spec: Path, out: Path, format_: str | None, scheduler: str | None,
            plugins: tuple[str, ...], models: Path | None, workers: int | None, resume: bool,
            **options: Any) -> None:
    """Run the pipeline SPEC over SOURCE without FUSE, writing the run into --out (cluster nodes).

    The same engine and outputs as a mount's .pipelines/; exit status as `hcsfs run --wait`: 0 done,
    1 failed, 2 cancelled, 3 done with failed units.
    """
    from hcsfs.logconfig import configure_logging
    from hcsfs.pipelines.process import process_plate
    from hcsfs.progress import Progress
    from hcsfs.runs import EXIT_CODES, outcome_of
    from hcsfs.sources import open_plate

    configure_logging(log_file=None, stderr=True, debug=False)
    plate = open_plate(source, format=format_, **_source_options(options))
    try:
        with Progress(spec.stem) as progress:
            status = process_plate(plate, spec, out, scheduler=scheduler, plugins=plugins, workers=workers,
                                   models=models, resume=resume, progress=progress.update)
    finally:
        plate.close()
    for error in status.get("errors", [])[:10]:
        click.echo(f"  error in {error.get('unit')}: {error.get('message')}")
    if status["state"] == "failed" and status.get("message"):
        click.echo(f"  {status['message']}")
    click.echo(f"hcsfs: {status['name']} {status['state']}: {status['done']}/{status['total']} units, "
               f"outputs in {out}")
    sys.exit(EXIT_CODES[outcome_of(status)])


@main.command()
@click.argument("mountpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the status files as one JSON object.")
def status(mountpoint: Path, as_json: bool) -> None:
    """Show every pipeline run of the mount at MOUNTPOINT: state, progress, errors."""
    from hcsfs.runs import read_statuses, render_status

    statuses = read_statuses(mountpoint)
    if as_json:
        click.echo(json.dumps(statuses, indent=2))
    elif not statuses:
        click.echo("no pipeline runs")
    else:
        for line in render_status(statuses):
            click.echo(line)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list: arguments with types, defaults, "
                                                      "ranges; memory types; per plane.")
@click.option("--plugins", multiple=True, metavar="MODULE",
              help="Also list the functions this module registers (trusted code; repeatable).")
def functions(as_json: bool, plugins: tuple[str, ...]) -> None:
    """List the pipeline functions a spec may name: built-ins and the library (scikit-image,
    scipy.ndimage, clEsperanto): arguments (type, default, range), memory types, per plane."""
    from hcsfs.pipelines.library_listing import function_rows, function_table_lines
    from hcsfs.pipelines.registry import default_registry, load_plugins

    registry = default_registry()
    load_plugins(registry, plugins)
    if as_json:
        click.echo(json.dumps(function_rows(registry), indent=1))
    else:
        for line in function_table_lines(registry):
            click.echo(line)


@main.command()
@click.argument("source", type=PLATE)
@click.option("--run", "runs", multiple=True, metavar="NAME|DIR",
              help="Follow this run live: a run of the mount by name, or a run folder (repeatable).")
@click.option("--format", "format_", metavar="NAME", help="Skip detection of SOURCE's format.")
@_s3_options
def view(source: Path | str, runs: tuple[str, ...], format_: str | None, **options: Any) -> None:
    """Open SOURCE in napari (a mount, a run folder, or any plate) with the plate widget.

    Needs napari: pip install 'hcsfs[napari]'.
    """
    try:
        from hcsfs.napari.app import view as open_view
    except ImportError as exc:
        raise HcsfsError(f"napari is not installed ({exc}): pip install 'hcsfs[napari]'") from None
    chosen = _source_options(options)
    if format_:
        chosen["format"] = format_
    open_view(_location(source) if isinstance(source, Path) else source, follow=runs, **chosen)
