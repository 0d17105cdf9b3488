"""napari tests: napari must be installed (the ``napari`` extra; in CI a missing napari fails), and the
Qt tests get a private X server.

Why Xvfb and not ``QT_QPA_PLATFORM=offscreen``: napari 0.9.2's canvas (vispy) needs an OpenGL context,
which Qt's offscreen platform does not give here (``viewer.screenshot()`` fails inside vispy's
``glGetString``). Under Xvfb, Qt's xcb platform gets one from Mesa (the xcb, xkbcommon, EGL and GL
libraries .ci/run installs). Xvfb is started the way the ImageJ client tests need it
(``need_tool``/``missing`` of tests/clients/conftest.py: skipped here without it, a failure in CI),
once per session, on a display number it picks itself (``-displayfd``).
"""

from __future__ import annotations

import os
import select
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.conftest import missing, need_tool


QT_CHILD = "HCSFS_NAPARI_QT_CHILD"
"""Set in the child pytest that runs the Qt tests (tests/napari/test_qt_process.py starts it)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # npe2 0.10 declares its pydantic models the pydantic-1 way: dozens of deprecation warnings on import.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"))
    # The Qt viewer's OpenGL context (Mesa under Xvfb) crashed inside glClear when the whole suite had
    # loaded OpenCL (PoCL), tensorflow and jax into the same process: the Qt tests run in a child
    # process of their own, which test_qt_process.py starts; here they are deselected, not skipped.
    if os.environ.get(QT_CHILD) != "1":
        qt = [i for i in items if "qt_display" in getattr(i, "fixturenames", ())]
        if qt:
            config.hook.pytest_deselected(items=qt)
            items[:] = [i for i in items if i not in qt]


def _need_napari() -> None:
    try:
        import napari  # noqa: F401
        import qtpy  # noqa: F401
    except ImportError as exc:
        missing(f"napari is not installed ({exc}): pip install -e '.[napari]'")


@pytest.fixture(autouse=True)
def napari_installed() -> None:
    _need_napari()


@pytest.fixture(scope="session", autouse=True)
def napari_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """napari keeps its settings in a file of this run, not in the user's ~/.config/napari."""
    saved = os.environ.get("NAPARI_CONFIG")
    os.environ["NAPARI_CONFIG"] = str(tmp_path_factory.mktemp("napari") / "settings.yaml")
    yield
    if saved is None:
        os.environ.pop("NAPARI_CONFIG", None)
    else:
        os.environ["NAPARI_CONFIG"] = saved


@pytest.fixture(scope="session")
def xvfb_display() -> Iterator[str]:
    """``:N`` of a private Xvfb for the whole session (the Qt viewer's display)."""
    need_tool("xvfb-run")  # the xvfb package, which brings Xvfb
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1600x1200x24",
                               "-nolisten", "tcp", "-noreset"], pass_fds=(write,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], 30)
        number = os.read(read, 64).decode().strip() if ready else ""
        if not number:
            server.kill()
            pytest.fail(f"Xvfb did not start: {server.communicate()[1].decode(errors='replace')}")
        yield f":{number}"
    finally:
        os.close(read)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="session")
def qt_display(xvfb_display: str) -> Iterator[str]:
    """Qt on the private X server: set before the first QApplication exists (napari makes it)."""
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "QT_QPA_PLATFORM")}
    os.environ["DISPLAY"] = xvfb_display
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    yield xvfb_display
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
