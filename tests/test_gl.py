"""metabench.gl: the OpenGL backend MuJoCo gets, chosen when ``import metabench`` runs.

Each case runs ``import metabench`` in a child process whose ``PATH`` starts with a fake ``ldconfig``
(the dynamic linker's cache as the case needs it), with no ``MUJOCO_GL`` of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metabench import gl

REPO = Path(__file__).resolve().parents[1]
REPORT = (
    "import json, os, metabench; "
    "print(json.dumps([os.environ.get('MUJOCO_GL'), os.environ.get('PYOPENGL_PLATFORM')]))"
)


def fake_ldconfig(tmp_path: Path, libraries: dict[str, str]) -> Path:
    """A folder holding an ``ldconfig`` whose ``-p`` lists ``libraries`` (soname -> path), only."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    lines = [f"{len(libraries)} libs found in cache `/etc/ld.so.cache'"]
    lines += [f"\t{soname} (libc6,x86-64) => {path}" for soname, path in libraries.items()]
    script = folder / "ldconfig"
    script.write_text("#!/bin/sh\ncat <<'EOF'\n" + "\n".join(lines) + "\nEOF\n")
    script.chmod(0o755)
    return folder


def run_child(path_first: Path, code: str = REPORT, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    environ.pop("LD_LIBRARY_PATH", None)
    environ.update(env, PATH=f"{path_first}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=environ, capture_output=True, text=True, timeout=300
    )


def chosen(path_first: Path, **env: str) -> list[str | None]:
    child = run_child(path_first, **env)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def _linux_only() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("the osmesa / egl / disable choice is made on Linux only")


def test_without_osmesa_or_egl_mujoco_still_imports_and_steps(tmp_path: Path) -> None:
    # The machine of issue 16: Python only. MUJOCO_GL=osmesa made `import mujoco` itself fail there.
    folder = fake_ldconfig(tmp_path, {})
    assert chosen(folder) == ["disable", None]
    code = (
        "import gymnasium as gym, metabench, mujoco; from metabench.gl import rendering_unavailable; "
        "env = gym.make('metabench/HalfCheetahVel-v0'); env.reset(seed=0); "
        "env.step(env.action_space.sample()); print(rendering_unavailable())"
    )
    child = run_child(folder, code)
    assert child.returncode == 0, child.stderr
    reason = child.stdout.strip().splitlines()[-1]
    assert "MUJOCO_GL=disable" in reason and gl.INSTALL_HINT in reason


def test_osmesa_is_chosen_where_libosmesa_loads(tmp_path: Path) -> None:
    stand_in = tmp_path / "libOSMesa.so.8"
    stand_in.symlink_to(_libc_path())  # a real library that loads stands in: the choice only loads it
    folder = fake_ldconfig(tmp_path, {"libOSMesa.so.8": str(stand_in)})
    assert chosen(folder) == ["osmesa", "osmesa"]


def test_an_unloadable_libosmesa_does_not_count(tmp_path: Path) -> None:
    # fresh-clone-check hides libOSMesa by mounting /dev/null over it: the file is there but empty.
    empty = tmp_path / "libOSMesa.so.8"
    empty.write_bytes(b"")
    folder = fake_ldconfig(tmp_path, {"libOSMesa.so.8": str(empty)})
    assert chosen(folder) == ["disable", None]


def test_egl_is_chosen_where_it_works_and_osmesa_is_absent(tmp_path: Path) -> None:
    real = {Path(p).name: p for p in gl._ldconfig_paths("EGL")}
    if not real or not gl.egl_works():
        pytest.skip("EGL gives no OpenGL context on this machine")
    folder = fake_ldconfig(tmp_path, real)
    assert chosen(folder) == ["egl", "egl"]


def test_egl_that_cannot_make_a_context_falls_back_to_disable(tmp_path: Path) -> None:
    # A libEGL that is not one (libc): the probe fails in its child process and nothing breaks here.
    folder = fake_ldconfig(tmp_path, {"libEGL.so.1": _libc_path()})
    assert chosen(folder) == ["disable", None]


def test_the_users_choice_wins(tmp_path: Path) -> None:
    folder = fake_ldconfig(tmp_path, {})
    assert chosen(folder, MUJOCO_GL="glfw") == ["glfw", None]
    assert chosen(folder, MUJOCO_GL="egl") == ["egl", "egl"]
    assert chosen(folder, MUJOCO_GL="osmesa", PYOPENGL_PLATFORM="osmesa") == ["osmesa", "osmesa"]
    # A PYOPENGL_PLATFORM of the user's is a choice too (MuJoCo refuses a backend that disagrees).
    assert chosen(folder, PYOPENGL_PLATFORM="egl") == ["egl", "egl"]


def test_choose_backend_is_idempotent_and_probes_nothing_once_set() -> None:
    environ = {"MUJOCO_GL": "disable"}
    assert gl.choose_backend(environ) == "disable"
    assert environ == {"MUJOCO_GL": "disable"}


def test_rendering_tests_skip_with_the_reason_when_rendering_is_off(tmp_path: Path) -> None:
    folder = fake_ldconfig(tmp_path, {})
    test = "tests/test_envs.py::test_render_rgb_array[metabench/HalfCheetahVel-v0]"
    code = f"import sys, pytest; sys.exit(pytest.main(['-p', 'no:xdist', '-q', '-rs', {test!r}]))"
    child = run_child(folder, code)
    assert child.returncode == 0, child.stdout + child.stderr
    assert "1 skipped" in child.stdout and "MUJOCO_GL=disable" in child.stdout, child.stdout


def _libc_path() -> str:
    """The resolved path of the libc this Python runs on."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        path = line.split()[-1]
        if "/libc.so" in path or "/libc-" in path:
            return path
    pytest.skip("no libc path found in /proc/self/maps")
