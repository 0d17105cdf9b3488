"""The system-package check that `make demo`/`make test`, .ci/run and `hcsfs doctor` share.

CI machines have FUSE, so these tests take it away: the check runs with a ``PATH`` (and a
``pkg-config``) that lack it, and a fake ``apt-get`` stands in for the real one when root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hcsfs import sysdeps
from hcsfs.doctor import check_system_packages
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "hcsfs" / "sysdeps.py"
FUSE_PACKAGES = "fuse3 libfuse3-dev pkg-config"


def _executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def _bin_without_fuse(tmp_path: Path) -> Path:
    """A PATH folder with a C compiler and a shell, but no fusermount3 and no pkg-config."""
    folder = tmp_path / "bin"
    folder.mkdir()
    _executable(folder / "gcc")
    os.symlink(shutil.which("sh") or "/bin/sh", folder / "sh")
    return folder


def _os_release(tmp_path: Path, distro: str) -> Path:
    path = tmp_path / f"os-release-{distro}"
    path.write_text({"debian": 'ID=debian\nVERSION_ID="12"\n', "ubuntu": "ID=ubuntu\nID_LIKE=debian\n",
                     "fedora": "ID=fedora\n", "arch": "ID=arch\n"}[distro])
    return path


def _check(args: list[str], path: Path, *, python: str = sys.executable, runner: str = sys.executable,
           user: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    command = [runner, str(SCRIPT), "--python", python, *args]
    if user is not None:
        command = [shutil.which("runuser") or "runuser", "-u", user, "--", *command]
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "PKG_CONFIG_PATH")}
    return subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**clean, "PATH": str(path), "PKG_CONFIG_LIBDIR": str(path), **env})


def test_without_fuse_the_check_prints_the_one_command_and_fails(tmp_path: Path) -> None:
    bin_dir = _bin_without_fuse(tmp_path)
    debian = _os_release(tmp_path, "debian")
    sudo = "" if os.geteuid() == 0 else "sudo "
    done = _check(["--os-release", str(debian), "build"], bin_dir)  # no --install: never installs
    assert done.returncode == 1
    assert done.stdout == ""
    command = f"{sudo}apt-get install -y {FUSE_PACKAGES}"
    assert done.stderr == f"hcsfs: this machine lacks system packages; run: {command}\n"


@pytest.fixture
def shared_tmp(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path``, or as root a folder other users can reach (pytest's folders are root's only)."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="hcsfs-sysdeps-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def test_a_user_gets_the_sudo_line_even_with_install(shared_tmp: Path) -> None:
    """Not root: nothing is installed, one line names the command (with sudo), the status is 1."""
    tmp_path = shared_tmp
    if os.geteuid() == 0:  # act as a user: the system Python (root's pyenv is private to root)
        if shutil.which("runuser") is None or not Path("/usr/bin/python3").exists():
            unavailable("needs runuser and /usr/bin/python3 to check as a user")
    debian = _os_release(tmp_path, "debian")
    bin_dir = _bin_without_fuse(tmp_path)
    if os.geteuid() == 0:
        bin_dir.chmod(0o755)
        _executable(bin_dir / "apt-get", "#!/bin/sh\necho apt-get must not run >&2\nexit 3\n")
        python = "/usr/bin/python3"
        done = _check(["--install", "--os-release", str(debian), "build"], bin_dir, python=python,
                      runner=python, user="nobody")
        include = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['include'])"],
            capture_output=True, text=True, check=True).stdout.strip()
    else:
        python = sys.executable
        done = _check(["--install", "--os-release", str(debian), "build"], bin_dir)
        include = sysconfig.get_paths()["include"]
    version = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    headers = "" if Path(include, "Python.h").exists() else f" python{version}-dev"
    assert done.returncode == 1, done.stderr
    assert done.stderr == ("hcsfs: this machine lacks system packages; run: "
                           f"sudo apt-get install -y {FUSE_PACKAGES}{headers}\n")


def test_as_root_on_debian_it_installs_with_apt_get_then_looks_again(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        unavailable("installing is done as root only (CI runs as root)")
    bin_dir = _bin_without_fuse(tmp_path)
    log = tmp_path / "apt.log"
    # The stand-in apt-get records its arguments; "installing" puts fusermount3 and a pkg-config that
    # knows fuse3 on the PATH, as the real packages would.
    _executable(bin_dir / "apt-get", f"""#!/bin/sh
echo "$@" >> {log}
if [ "$1" = install ]; then
    printf '#!/bin/sh\\nexit 0\\n' > {bin_dir}/fusermount3
    printf '#!/bin/sh\\n[ "$1" = --exists ] && [ "$2" = fuse3 ]\\n' > {bin_dir}/pkg-config
    {shutil.which("chmod")} 755 {bin_dir}/fusermount3 {bin_dir}/pkg-config
fi
""")
    done = _check(["--install", "--os-release", str(_os_release(tmp_path, "ubuntu")), "build"], bin_dir)
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"hcsfs: installing {FUSE_PACKAGES} (apt-get)\n"
    assert log.read_text().splitlines() == [
        "update -qq", f"install -y -qq --no-install-recommends {FUSE_PACKAGES}"]
    again = _check(["--install", "--os-release", str(_os_release(tmp_path, "ubuntu")), "build"], bin_dir)
    assert (again.returncode, again.stderr) == (0, "")  # nothing missing: silent
    assert len(log.read_text().splitlines()) == 2


def test_a_pkg_config_without_fuse3_counts_the_headers_missing(tmp_path: Path) -> None:
    bin_dir = _bin_without_fuse(tmp_path)
    _executable(bin_dir / "fusermount3")
    _executable(bin_dir / "pkg-config", "#!/bin/sh\nexit 1\n")  # knows no module at all
    done = _check(["--os-release", str(_os_release(tmp_path, "fedora")), "build"], bin_dir)
    sudo = "" if os.geteuid() == 0 else "sudo "
    assert done.returncode == 1
    assert done.stderr == (f"hcsfs: this machine lacks system packages; run: {sudo}dnf install -y "
                           "fuse3-devel\n")


def test_missing_clients_fail_only_in_ci(tmp_path: Path) -> None:
    bin_dir = _bin_without_fuse(tmp_path)
    _executable(bin_dir / "fusermount3")
    _executable(bin_dir / "pkg-config")
    debian = str(_os_release(tmp_path, "debian"))
    here = _check(["--os-release", debian, "build", "clients"], bin_dir)
    in_ci = _check(["--os-release", debian, "build", "clients"], bin_dir, CI="true")
    assert here.returncode == 0 and in_ci.returncode == 1
    for done in (here, in_ci):
        (line,) = done.stderr.splitlines()
        assert "apt-get install -y libtiff-tools rsync imagemagick gdal-bin" in line, line
        assert "fuse3" not in line


def test_make_checks_system_packages_before_pip() -> None:
    if shutil.which("make") is None:
        unavailable("make is not installed")
    for target, groups in (("demo", "build"), ("test", "build clients"), ("install", "build")):
        plan = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.splitlines()
        check = next(i for i, line in enumerate(plan) if "hcsfs/sysdeps.py" in line)
        assert plan[check].endswith(f" {groups}"), plan[check]
        assert "--install" in plan[check]
        pip = next(i for i, line in enumerate(plan) if "pip install" in line)
        assert check < pip, plan


def test_the_list_lives_in_one_place() -> None:
    """.ci/run and the Makefile name no system package themselves: they run hcsfs/sysdeps.py."""
    names = {p.apt for group in sysdeps.GROUPS.values() for p in group if "{py}" not in p.apt}
    for path in (ROOT / ".ci" / "run", ROOT / "Makefile"):
        text = path.read_text()
        assert "hcsfs/sysdeps.py" in text
        named = {n for n in names if re.search(rf"(?<![\w.-]){re.escape(n)}(?![\w.-])", text)}
        assert not named, f"{path.name} names {sorted(named)}"


def test_doctor_reports_the_same_command(tmp_path: Path) -> None:
    bin_dir = _bin_without_fuse(tmp_path)
    env = {**os.environ, "PATH": str(bin_dir), "PKG_CONFIG_LIBDIR": str(bin_dir)}
    build, clients = check_system_packages(env, _os_release(tmp_path, "debian"))
    assert build.ok is False and build.name == "system packages"
    sudo = "" if os.geteuid() == 0 else "sudo "
    assert build.fix == f"{sudo}apt-get install -y {FUSE_PACKAGES}"
    assert build.detail == "missing: fuse3, libfuse3-dev, pkg-config"
    assert clients.ok is None or clients.ok is True
