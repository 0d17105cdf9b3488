#!/usr/bin/env python3
"""The system packages hcsfs needs, in one place: ``make demo``/``make test``, ``.ci/run`` and
``hcsfs doctor`` all read this list.

Standard library only, so it runs before any virtual environment exists::

    python3 hcsfs/sysdeps.py [--install] [--python python3.11] build [clients]

Each package is found by what it provides (a command on ``PATH``, a ``pkg-config`` module, a file, a
shared library, a Python's headers), never by asking dpkg, so the check is the same on every distribution
and a test can hide a package by changing ``PATH`` or ``PKG_CONFIG_LIBDIR``. What is missing is installed
with apt-get when ``--install`` is given, the user is root and the machine is Debian or Ubuntu; otherwise
one line names the exact command to run, and nothing else is printed.

Groups: ``build`` (building pyfuse3 and mounting: FUSE 3 and its headers, pkg-config, a C compiler, the
Python's headers and venv) is required: the exit status is 1 while any of it is missing. ``clients`` (the
programs the tests drive: libtiff, ImageMagick, GDAL, ImageJ under Xvfb, a JDK, OpenCL on the CPU, Qt's
libraries for napari) is required only in CI (``CI=true``); elsewhere the tests skip what is absent.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SystemPackage", "GROUPS", "REQUIRED", "missing", "install_command", "package_manager",
           "apt_package_for", "main"]


@dataclass(frozen=True)
class SystemPackage:
    """One distribution package: its names, what it is for, and how to see that it is there."""

    apt: str
    """Debian/Ubuntu name (``{py}`` stands for the target Python's version, ``3.11``)."""
    dnf: str | None
    """Fedora/RHEL name, or None where that distribution has no such package or it is part of another."""
    purpose: str
    probe: str
    """``command:NAME``, ``pkg-config:MODULE``, ``file:GLOB``, ``library:SONAME``, ``python:headers`` or
    ``python:venv`` (the target Python)."""

    def name(self, manager: str, python_version: str) -> str | None:
        name = self.apt if manager == "apt" else self.dnf
        return None if name is None else name.replace("{py}", python_version)


_QT = "Qt's xcb platform for napari's viewer under Xvfb"
GROUPS: dict[str, tuple[SystemPackage, ...]] = {
    "build": (
        SystemPackage("fuse3", "fuse3", "FUSE 3 (fusermount3)", "command:fusermount3"),
        SystemPackage("libfuse3-dev", "fuse3-devel", "FUSE 3 headers (pyfuse3 is built from source)",
                      "pkg-config:fuse3"),
        SystemPackage("pkg-config", "pkgconf-pkg-config", "pkg-config (pyfuse3's build finds FUSE with it)",
                      "command:pkg-config"),
        SystemPackage("gcc", "gcc", "a C compiler (pyfuse3 is built from source)", "command:gcc"),
        SystemPackage("python{py}-dev", "python3-devel", "the Python headers (pyfuse3 is built from source)",
                      "python:headers"),
        SystemPackage("python{py}-venv", None, "the Python's venv and ensurepip", "python:venv"),
    ),
    "clients": (
        SystemPackage("libtiff-tools", "libtiff-tools", "tiffinfo (strict TIFF validation)",
                      "command:tiffinfo"),
        SystemPackage("rsync", "rsync", "rsync of a mount", "command:rsync"),
        SystemPackage("imagemagick", "ImageMagick", "identify -regard-warnings", "command:identify"),
        SystemPackage("gdal-bin", "gdal", "gdalinfo -stats -checksum", "command:gdalinfo"),
        SystemPackage("imagej", None, "ImageJ 1.x", "file:/usr/share/java/ij.jar"),
        SystemPackage("xvfb", "xorg-x11-server-Xvfb", "xvfb-run (ImageJ and napari need a display)",
                      "command:xvfb-run"),
        SystemPackage("xauth", "xorg-x11-xauth", "xauth (xvfb-run)", "command:xauth"),
        SystemPackage("openjdk-17-jdk-headless", "java-17-openjdk-devel",
                      "a JDK (ImageJ; CellProfiler's python-javabridge is built with it)",
                      "file:/usr/lib/jvm/java-17-openjdk*/bin/javac"),
        SystemPackage("pocl-opencl-icd", "pocl", "OpenCL on the CPU (pyclesperanto)",
                      "file:/etc/OpenCL/vendors/pocl*.icd"),
        SystemPackage("libxkbcommon-x11-0", "libxkbcommon-x11", _QT, "library:libxkbcommon-x11.so.0"),
        SystemPackage("libxcb-icccm4", "xcb-util-wm", _QT, "library:libxcb-icccm.so.4"),
        SystemPackage("libxcb-image0", "xcb-util-image", _QT, "library:libxcb-image.so.0"),
        SystemPackage("libxcb-keysyms1", "xcb-util-keysyms", _QT, "library:libxcb-keysyms.so.1"),
        SystemPackage("libxcb-randr0", "libxcb", _QT, "library:libxcb-randr.so.0"),
        SystemPackage("libxcb-render-util0", "xcb-util-renderutil", _QT, "library:libxcb-render-util.so.0"),
        SystemPackage("libxcb-xinerama0", "libxcb", _QT, "library:libxcb-xinerama.so.0"),
        SystemPackage("libxcb-xfixes0", "libxcb", _QT, "library:libxcb-xfixes.so.0"),
        SystemPackage("libxcb-shape0", "libxcb", _QT, "library:libxcb-shape.so.0"),
        SystemPackage("libxcb-cursor0", "xcb-util-cursor", _QT, "library:libxcb-cursor.so.0"),
        SystemPackage("libegl1", "libglvnd-egl", "OpenGL (napari's canvas)", "library:libEGL.so.1"),
        SystemPackage("libgl1", "libglvnd-glx", "OpenGL (napari's canvas)", "library:libGL.so.1"),
    ),
}
REQUIRED = ("build",)
"""Groups whose absence is an error everywhere (``clients`` is an error only in CI)."""

_LIBRARY_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/lib/x86_64-linux-gnu",
                 "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
                 "/usr/local/lib")


def apt_package_for(probe_target: str) -> str | None:
    """The Debian package that provides ``probe_target`` (a command name, a file such as ``ij.jar``)."""
    for packages in GROUPS.values():
        for package in packages:
            _, _, target = package.probe.partition(":")
            if target == probe_target or Path(target).name == probe_target:
                return package.apt
    return None


def _python_facts(python: str, env: Mapping[str, str]) -> dict[str, str] | None:
    """Version, include dir and whether venv works, of the Python that will build the venv."""
    code = ("import os, sys, sysconfig, importlib.util as u; "
            "print(f'{sys.version_info[0]}.{sys.version_info[1]}'); "
            "print(os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h'))); "
            "print(u.find_spec('ensurepip') is not None and u.find_spec('venv') is not None)")
    executable = shutil.which(python, path=env.get("PATH", os.defpath))
    if executable is None:
        return None
    try:
        done = subprocess.run([executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env=dict(env))
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.split()
    if done.returncode != 0 or len(lines) != 3:
        return None
    return {"version": lines[0], "headers": lines[1], "venv": lines[2]}


def _library_present(soname: str, env: Mapping[str, str]) -> bool:
    ldconfig = shutil.which("ldconfig", path="/sbin:/usr/sbin:" + env.get("PATH", os.defpath))
    if ldconfig is not None:
        try:
            done = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=30)
            if done.returncode == 0:
                return any(line.strip().startswith(soname + " ") for line in done.stdout.splitlines())
        except (OSError, subprocess.TimeoutExpired):
            pass
    return any(os.path.exists(os.path.join(folder, soname)) for folder in _LIBRARY_DIRS)


def _present(package: SystemPackage, env: Mapping[str, str], python: dict[str, str] | None) -> bool:
    kind, _, target = package.probe.partition(":")
    path = env.get("PATH", os.defpath)
    if kind == "command":
        return shutil.which(target, path=path) is not None
    if kind == "pkg-config":
        pkg_config = shutil.which("pkg-config", path=path)
        if pkg_config is None:
            return False
        return subprocess.run([pkg_config, "--exists", target], env=dict(env),
                              capture_output=True).returncode == 0
    if kind == "file":
        return bool(glob.glob(target))
    if kind == "library":
        return _library_present(target, env)
    if kind == "python":
        return python is not None and python.get(target) == "True"
    raise ValueError(f"unknown probe {package.probe!r}")


def _version_of(python: str) -> str:
    found = re.search(r"(\d+\.\d+)$", python)
    return found.group(1) if found else "3"


def missing(groups: Iterable[str], python: str = "python3",
            env: Mapping[str, str] | None = None) -> list[tuple[str, SystemPackage]]:
    """``(group, package)`` for every package of ``groups`` this machine lacks (``python``: the
    interpreter that will build the venv; its absence counts as ``python{py}``, ``-dev``, ``-venv``)."""
    env = os.environ if env is None else env
    wanted = [(group, package) for group in groups for package in GROUPS[group]]
    facts = _python_facts(python, env) if any(p.probe.startswith("python:") for _, p in wanted) else None
    found = [(group, package) for group, package in wanted if not _present(package, env, facts)]
    if facts is None and any(p.probe.startswith("python:") for _, p in wanted):
        found.insert(0, ("build", SystemPackage("python{py}", "python{py}", f"{python} itself",
                                                f"command:{python}")))
    return found


def package_manager(os_release: Path = Path("/etc/os-release")) -> str | None:
    """``apt`` (Debian, Ubuntu and their kin), ``dnf`` (Fedora, RHEL and kin), or None."""
    try:
        text = os_release.read_text()
    except OSError:
        return None
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    ids = " ".join(fields.get(k, "").strip('"').lower() for k in ("ID", "ID_LIKE")).split()
    if any(i in ("debian", "ubuntu") for i in ids):
        return "apt"
    if any(i in ("fedora", "rhel", "centos") for i in ids):
        return "dnf"
    return None


def _names(packages: Sequence[SystemPackage], manager: str | None, python_version: str) -> list[str]:
    names: list[str] = []
    for package in packages:
        name = package.name(manager or "apt", python_version)
        if name is not None and name not in names:
            names.append(name)
    return names


def install_command(packages: Sequence[SystemPackage], manager: str | None, root: bool,
                    python_version: str = "3") -> str:
    """The one command that installs ``packages`` here, as a user would type it."""
    sudo = "" if root else "sudo "
    names = " ".join(_names(packages, manager, python_version))
    if manager == "dnf":
        return f"{sudo}dnf install -y {names}"
    return f"{sudo}apt-get install -y {names}"


def _apt_install(names: list[str], env: Mapping[str, str]) -> bool:
    apt = shutil.which("apt-get", path=env.get("PATH", os.defpath))
    if apt is None:
        return False
    quiet = {**env, "DEBIAN_FRONTEND": "noninteractive"}
    steps = [[apt, "update", "-qq"], [apt, "install", "-y", "-qq", "--no-install-recommends", *names]]
    return all(subprocess.run(step, env=quiet).returncode == 0 for step in steps)


def _in_ci(env: Mapping[str, str]) -> bool:
    return env.get("CI", "").lower() in ("1", "true", "yes")


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="+", choices=sorted(GROUPS))
    parser.add_argument("--python", default="python3", help="the Python that will build the venv")
    parser.add_argument("--install", action="store_true", help="install with apt-get when root on Debian")
    parser.add_argument("--os-release", type=Path, default=Path("/etc/os-release"), help=argparse.SUPPRESS)
    parser.add_argument("--list", action="store_true", help="print the packages of the groups and exit")
    args = parser.parse_args(argv)
    env = os.environ if env is None else env
    manager = package_manager(args.os_release)
    version = _version_of(args.python)
    if args.list:
        print(" ".join(_names([p for g in args.groups for p in GROUPS[g]], manager, version)))
        return 0
    lacking = missing(args.groups, args.python, env)
    if not lacking:
        return 0
    root = os.geteuid() == 0
    packages = [package for _, package in lacking]
    if args.install and root and manager == "apt":
        names = _names(packages, manager, version)
        print(f"hcsfs: installing {' '.join(names)} (apt-get)", file=sys.stderr, flush=True)
        if _apt_install(names, env):
            lacking = missing(args.groups, args.python, env)
            if not lacking:
                return 0
            packages = [package for _, package in lacking]
    required = set(REQUIRED) | ({"clients"} if _in_ci(env) else set())
    command = install_command(packages, manager, root, version)
    print(f"hcsfs: this machine lacks system packages; run: {command}", file=sys.stderr)
    return 1 if any(group in required for group, _ in lacking) else 0


if __name__ == "__main__":
    sys.exit(main())
