"""``hcsfs doctor``: what this machine has and lacks for mounting plates, and how to fix each gap.

Every check is cheap and imports nothing heavy: optional frameworks are looked up with
``importlib.util.find_spec`` (importing torch, jax or tensorflow takes seconds), and their devices are
probed only when asked (``frameworks=True``), each in a subprocess with a time limit so a hanging
driver cannot hang the doctor. FUSE mounts are inspected through ``/proc/self/mountinfo`` and a
timed ``stat``, never ``os.path.ismount`` (it can hang on a dead mount).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Check", "FRAMEWORKS", "check_system_packages", "exit_status", "format_checks", "run_checks"]

DEV_FUSE = Path("/dev/fuse")
FUSE_CONF = Path("/etc/fuse.conf")
MOUNTINFO = Path("/proc/self/mountinfo")
OPENCL_VENDORS = Path("/etc/OpenCL/vendors")
MOUNT_HELPER_DIRS = (Path("/sbin"), Path("/sbin/fs.d"), Path("/sbin/fs"))
PROBE_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Check:
    """One finding. ``ok`` is True (fine), False (a problem) or None (information only)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class Framework:
    """An optional package: its import name, distribution, extra, and a device probe (run in a child)."""

    module: str
    distribution: str
    extra: str
    purpose: str
    probe: str = ""
    """Python code printing a one-line device summary; empty: nothing to probe."""


FRAMEWORKS: tuple[Framework, ...] = (
    Framework("zarr", "zarr", "zarr", "OME-Zarr plates and outputs"),
    Framework("tensorstore", "tensorstore", "zarr", "--zarr-impl tensorstore"),
    Framework("torch", "torch", "torch", "pipeline steps with memory: torch",
              "import torch; n = torch.cuda.device_count(); "
              "names = [torch.cuda.get_device_name(i) for i in range(n)]; "
              "print(f'{n} CUDA device(s)' + ''.join(', ' + name for name in names))"),
    Framework("jax", "jax", "jax", "pipeline steps with memory: jax",
              "import jax; print(', '.join(f'{d.platform}:{d.id}' for d in jax.devices()))"),
    Framework("tensorflow", "tensorflow-cpu", "tensorflow", "pipeline steps with memory: tensorflow",
              "import tensorflow as tf; g = tf.config.list_physical_devices('GPU'); "
              "print(f'{len(g)} GPU(s)')"),
    Framework("cupy", "cupy-cuda12x", "cupy", "pipeline steps with memory: cupy",
              "import cupy\ntry: print(f'{cupy.cuda.runtime.getDeviceCount()} CUDA device(s)')\n"
              "except cupy.cuda.runtime.CUDARuntimeError as e: print(f'no usable CUDA device ({e})')"),
    Framework("pyclesperanto", "pyclesperanto", "cle", "pipeline steps with memory: pyclesperanto (OpenCL)",
              "import pyclesperanto as cle; d = cle.list_available_devices(); "
              "print(f'{len(d)} OpenCL device(s): ' + ', '.join(d))"),
    Framework("pyclesperanto_prototype", "pyclesperanto-prototype", "cle-prototype",
              "memory: pyclesperanto_prototype (OpenCL through pyopencl; installed with --no-deps)",
              "import pyclesperanto_prototype as cle; "
              "print('OpenCL device: ' + cle.get_device().device.name)"),
)


def _version(distribution: str, module: str) -> str:
    for name in (distribution, module):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown version"


def _install(*apt_names: str) -> str:
    """The command installing these packages of :mod:`hcsfs.sysdeps` (named by their Debian names)."""
    from hcsfs import sysdeps

    packages = [p for group in sysdeps.GROUPS.values() for p in group if p.apt in apt_names]
    return sysdeps.install_command(packages, sysdeps.package_manager(), os.geteuid() == 0)


def check_dev_fuse(path: Path = DEV_FUSE) -> Check:
    if not path.exists():
        return Check("/dev/fuse", False, f"{path} does not exist",
                     "load the module (modprobe fuse); in a container start it with "
                     "--device /dev/fuse --cap-add SYS_ADMIN")
    if not os.access(path, os.R_OK | os.W_OK):
        return Check("/dev/fuse", False, f"{path} exists but this user cannot open it",
                     "chmod 666 /dev/fuse, or add this user to the group that owns it")
    return Check("/dev/fuse", True, f"{path} is readable and writable")


def check_fusermount() -> Check:
    found = shutil.which("fusermount3")
    if found is None:
        legacy = shutil.which("fusermount")
        detail = "fusermount3 not found" + (f" (only FUSE 2's {legacy})" if legacy else "")
        return Check("fusermount3", False, detail, _install("fuse3"))
    if os.geteuid() != 0 and not os.stat(found).st_mode & 0o4000:
        return Check("fusermount3", False, f"{found} is not setuid root: users cannot mount",
                     f"chmod u+s {found} (or reinstall fuse3)")
    return Check("fusermount3", True, found)


def check_pyfuse3() -> Check:
    if importlib.util.find_spec("pyfuse3") is None:
        return Check("pyfuse3", False, "pyfuse3 is not installed",
                     f"{_install('fuse3', 'libfuse3-dev', 'pkg-config', 'gcc')}, then pip install pyfuse3")
    try:
        import pyfuse3  # noqa: F401  (a compiled module: cheap, and it proves libfuse3 loads)
    except ImportError as exc:
        return Check("pyfuse3", False, f"pyfuse3 does not load: {exc}", _install("fuse3"))
    return Check("pyfuse3", True, f"pyfuse3 {_version('pyfuse3', 'pyfuse3')}")


def check_allow_other(conf: Path = FUSE_CONF) -> Check:
    try:
        lines = conf.read_text().splitlines()
    except OSError:
        lines = []
    if any(line.split("#", 1)[0].strip() == "user_allow_other" for line in lines):
        return Check("user_allow_other", True, f"set in {conf}: --allow-other works for every user")
    if os.geteuid() == 0:
        return Check("user_allow_other", None,
                     f"not set in {conf}; root can still use --allow-other, other users cannot",
                     f"echo user_allow_other >> {conf}")
    return Check("user_allow_other", None, f"not set in {conf}: needed only for --allow-other",
                 f"echo user_allow_other | sudo tee -a {conf}")


def check_system_packages(env: Mapping[str, str] | None = None,
                          os_release: Path = Path("/etc/os-release")) -> list[Check]:
    """The system packages of :mod:`hcsfs.sysdeps` (the list ``make`` and ``.ci/run`` install): the
    build group (FUSE and the tools pyfuse3 is built with) as a problem, the test clients as information."""
    from hcsfs import sysdeps

    manager = sysdeps.package_manager(os_release)
    root = os.geteuid() == 0
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    checks = []
    for group, ok_if_missing in (("build", False), ("clients", None)):
        lacking = [p for _, p in sysdeps.missing([group], sys.executable, env)]
        title = {"build": "system packages", "clients": "test clients"}[group]
        if not lacking:
            checks.append(Check(title, True, f"all {len(sysdeps.GROUPS[group])} present"))
            continue
        names = ", ".join(p.name(manager or "apt", version) or p.apt for p in lacking)
        checks.append(Check(title, ok_if_missing, f"missing: {names}",
                            sysdeps.install_command(lacking, manager, root, version)))
    return checks


def hcsfs_mounts(mountinfo: Path = MOUNTINFO) -> list[str]:
    """Mountpoints of hcsfs mounts in this mount namespace (fstype ``fuse.hcsfs``)."""
    from hcsfs.fs.mounttable import mount_entries

    try:
        entries = mount_entries(str(mountinfo))
    except OSError:
        return []
    return [e.mountpoint for e in entries if e.fstype == "fuse.hcsfs" or e.source == "hcsfs"]


def check_mounts(mountinfo: Path = MOUNTINFO, timeout: float = 5.0) -> list[Check]:
    """One check per hcsfs mount: live ones as information, stale or hung ones as problems."""
    from hcsfs.fs.mounttable import MountState, probe_mountpoint

    mounts = hcsfs_mounts(mountinfo)
    if not mounts:
        return [Check("hcsfs mounts", True, "no hcsfs mounts")]
    checks = []
    for mountpoint in mounts:
        state = probe_mountpoint(mountpoint, timeout=timeout)
        if state == MountState.LIVE:
            checks.append(Check(f"mount {mountpoint}", True, "live"))
        elif state == MountState.ABSENT:  # unmounted between the two looks
            continue
        else:
            what = "stale (its daemon died)" if state == MountState.STALE else "hung (no answer)"
            checks.append(Check(f"mount {mountpoint}", False, what, f"hcsfs unmount {mountpoint}"))
    return checks


def check_mount_helper(dirs: Iterable[Path] = MOUNT_HELPER_DIRS) -> Check:
    for folder in dirs:
        helper = folder / "mount.hcsfs"
        if helper.exists():
            return Check("mount.hcsfs", True, f"{helper}: fstab lines and mount -t hcsfs work")
    return Check("mount.hcsfs", None, "not installed: only needed for /etc/fstab and mount -t hcsfs",
                 "install -m 755 scripts/mount.hcsfs /sbin/mount.hcsfs (see docs/deployment.md)")


def check_framework(framework: Framework, probe: bool, timeout: float = PROBE_TIMEOUT) -> Check:
    name = framework.module
    if importlib.util.find_spec(name) is None:
        return Check(name, None, f"not installed (optional: {framework.purpose})",
                     f"pip install 'hcsfs[{framework.extra}]'")
    version = _version(framework.distribution, name)
    if not probe or not framework.probe:
        return Check(name, True, version)
    try:
        done = subprocess.run([sys.executable, "-c", framework.probe], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return Check(name, False, f"{version}; device probe did not answer within {timeout:.0f} s",
                     "check the GPU driver (nvidia-smi) or the OpenCL ICD")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        if "ImportError" in done.stderr or "ModuleNotFoundError" in done.stderr:
            return Check(name, False, f"{version}; importing it failed: {last}",
                         f"pip install --force-reinstall 'hcsfs[{framework.extra}]'")
        return Check(name, False, f"{version}; device probe failed: {last}",
                     "check the GPU driver (nvidia-smi) or the OpenCL ICD (clinfo)")
    return Check(name, True, f"{version}; {done.stdout.strip()}")


def check_gpus(vendors: Path = OPENCL_VENDORS, timeout: float = 20.0) -> list[Check]:
    """GPUs and OpenCL platforms seen by the system, without importing any framework."""
    checks = []
    nvidia = sorted(str(p) for p in Path("/dev").glob("nvidia[0-9]*"))
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=timeout)
            listed = done.stdout.strip().splitlines() if done.returncode == 0 else []
            detail = "; ".join(listed) or f"nvidia-smi failed: {done.stderr.strip()}"
            checks.append(Check("NVIDIA GPUs", bool(listed), detail,
                                "" if listed else "check the NVIDIA driver (nvidia-smi)"))
        except subprocess.TimeoutExpired:
            checks.append(Check("NVIDIA GPUs", False, "nvidia-smi did not answer", "check the NVIDIA driver"))
    else:
        detail = f"{len(nvidia)} /dev/nvidia* device(s) but no nvidia-smi" if nvidia else "none found"
        checks.append(Check("NVIDIA GPUs", None, detail))
    icds = sorted(p.name for p in vendors.glob("*.icd")) if vendors.is_dir() else []
    if icds:
        checks.append(Check("OpenCL", True, "ICDs: " + ", ".join(icds)))
    else:
        checks.append(Check("OpenCL", None, f"no OpenCL ICD in {vendors} (pyclesperanto needs one)",
                            "apt-get install pocl-opencl-icd (CPU) or your GPU vendor's ICD"))
    return checks


def run_checks(frameworks: bool = False) -> list[Check]:
    """Every check, in the order shown. ``frameworks=True`` also imports each installed framework in a
    child process and reports its devices (seconds each)."""
    from hcsfs import __version__

    checks = [Check("hcsfs", None, f"hcsfs {__version__}, Python {platform.python_version()} "
                                   f"({sys.executable}), {platform.system()} {platform.release()}")]
    checks += [check_dev_fuse(), check_fusermount(), check_pyfuse3(), check_allow_other()]
    checks += check_system_packages()
    checks += check_mounts()
    checks.append(check_mount_helper())
    checks += [check_framework(f, probe=frameworks) for f in FRAMEWORKS]
    checks += check_gpus()
    return checks


def format_checks(checks: Iterable[Check]) -> list[str]:
    """Lines for a terminal: ``ok``/``FAIL``/``info``, the name, the detail, and the fix indented."""
    lines = []
    for check in checks:
        mark = {True: "ok  ", False: "FAIL", None: "info"}[check.ok]
        lines.append(f"[{mark}] {check.name}: {check.detail}")
        if check.fix and check.ok is not True:
            lines.append(f"       fix: {check.fix}")
    return lines


def exit_status(checks: Iterable[Check]) -> int:
    """1 if any check failed, else 0 (information-only findings never fail)."""
    return 1 if any(check.ok is False for check in checks) else 0
