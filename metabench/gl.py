"""Which OpenGL backend MuJoCo renders with, chosen before anything imports ``mujoco``.

MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is imported, and with ``MUJOCO_GL=osmesa`` on a
machine without libOSMesa that import itself fails. So ``import metabench`` (and the test suite's
``conftest.py``) call :func:`choose_backend` first, which sets ``MUJOCO_GL`` where the user has not:

1. ``osmesa`` where libOSMesa is installed (software rendering; Debian/Ubuntu: ``apt-get install
   libosmesa6``);
2. else ``egl`` where an EGL device display can be initialised (a GPU driver, or Mesa's EGL);
3. else ``disable``: everything but rendering works, and ``render()`` on a MuJoCo env fails.

A ``MUJOCO_GL`` the user set always wins, and so does a ``PYOPENGL_PLATFORM`` of ``osmesa`` or ``egl``
(MuJoCo refuses a backend that disagrees with it). ``PYOPENGL_PLATFORM`` is set to match the choice.
The choice lives in the process environment, so child processes (pytest-xdist workers, Ray workers)
inherit it without probing again.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import subprocess
import sys
from collections.abc import MutableMapping

#: The values of ``MUJOCO_GL`` that turn MuJoCo's rendering off (as ``mujoco/__init__.py`` reads them).
DISABLED = ("disable", "disabled", "off", "false", "0")
#: What a user runs to get rendering on a Debian/Ubuntu machine that has none.
INSTALL_HINT = "apt-get install libosmesa6"

# Runs in a child process, so that a broken EGL driver cannot crash or pollute the caller. It does
# what MuJoCo's EGL context does (mujoco/egl/__init__.py): a display on an EGL device, a pbuffer
# RGBA8 / depth 24 / stencil 8 OpenGL config, and a surfaceless context made current.
_EGL_PROBE = r"""
import ctypes, sys
c = ctypes
egl = c.CDLL(sys.argv[1])
egl.eglGetProcAddress.restype = c.c_void_p
egl.eglGetProcAddress.argtypes = [c.c_char_p]
def ext(name, restype, *argtypes):
    address = egl.eglGetProcAddress(name)
    if not address:
        sys.exit(name.decode() + " is missing")
    return c.CFUNCTYPE(restype, *argtypes)(address)
query_devices = ext(b"eglQueryDevicesEXT", c.c_uint, c.c_int, c.POINTER(c.c_void_p), c.POINTER(c.c_int))
platform_display = ext(b"eglGetPlatformDisplayEXT", c.c_void_p, c.c_uint, c.c_void_p, c.c_void_p)
egl.eglInitialize.argtypes = [c.c_void_p, c.c_void_p, c.c_void_p]
egl.eglChooseConfig.argtypes = [c.c_void_p, c.c_void_p, c.c_void_p, c.c_int, c.POINTER(c.c_int)]
egl.eglCreateContext.restype = c.c_void_p
egl.eglCreateContext.argtypes = [c.c_void_p, c.c_void_p, c.c_void_p, c.c_void_p]
egl.eglMakeCurrent.argtypes = [c.c_void_p, c.c_void_p, c.c_void_p, c.c_void_p]
egl.eglTerminate.argtypes = [c.c_void_p]
attributes = (c.c_int * 19)(0x3024, 8, 0x3023, 8, 0x3022, 8, 0x3021, 8, 0x3025, 24, 0x3026, 8,
                            0x303F, 0x308E, 0x3033, 0x0001, 0x3040, 0x0008, 0x3038)
devices, n = (c.c_void_p * 16)(), c.c_int()
if not query_devices(16, devices, c.byref(n)) or n.value < 1:
    sys.exit("no EGL device")
for device in devices[: n.value]:
    display = platform_display(0x313F, device, None)  # EGL_PLATFORM_DEVICE_EXT
    if not display or not egl.eglInitialize(display, None, None):
        continue
    config, found = c.c_void_p(), c.c_int()
    ok = egl.eglChooseConfig(display, attributes, c.byref(config), 1, c.byref(found)) and found.value
    if ok and egl.eglBindAPI(0x30A2):  # EGL_OPENGL_API
        context = egl.eglCreateContext(display, config, None, None)
        if context and egl.eglMakeCurrent(display, None, None, context):
            egl.eglMakeCurrent(display, None, None, None)
            sys.exit(0)
    egl.eglTerminate(display)
sys.exit("no EGL device gives an OpenGL context")
"""


def _ldconfig_paths(name: str) -> list[str]:
    """Paths of ``lib<name>.so*`` the dynamic linker knows: its cache (``ldconfig -p``), then
    ``LD_LIBRARY_PATH``. ``ldconfig`` is looked up on ``PATH`` first (then /sbin), as a shell would."""
    found: list[str] = []
    ldconfig = shutil.which("ldconfig") or shutil.which("ldconfig", path="/sbin:/usr/sbin")
    if ldconfig:
        try:
            out = subprocess.run(
                [ldconfig, "-p"], capture_output=True, text=True, timeout=20, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            soname, _, path = line.strip().partition(" => ")
            if soname.startswith(f"lib{name}.so") and path:
                found.append(path.strip())
    for folder in filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(":")):
        found.extend(sorted(glob.glob(os.path.join(folder, f"lib{name}.so*"))))
    return found


def osmesa_library() -> str | None:
    """The path of a libOSMesa that loads, or None."""
    for path in _ldconfig_paths("OSMesa"):
        try:
            ctypes.CDLL(path)
        except OSError:
            continue
        return path
    return None


def egl_works() -> bool:
    """Whether an EGL device display gives an OpenGL context here (probed in a child process)."""
    for path in _ldconfig_paths("EGL"):
        try:
            probe = subprocess.run(
                [sys.executable, "-I", "-S", "-c", _EGL_PROBE, path],
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return True
    return False


def choose_backend(environ: MutableMapping[str, str] | None = None) -> str:
    """Set ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) in ``environ`` unless the user did; return it.

    Idempotent: the second call finds ``MUJOCO_GL`` set and probes nothing.
    """
    env = os.environ if environ is None else environ
    chosen = env.get("MUJOCO_GL", "").strip().lower()
    if not chosen:
        platform = env.get("PYOPENGL_PLATFORM", "").strip().lower()
        if platform in ("osmesa", "egl"):
            chosen = platform
        elif not sys.platform.startswith("linux"):
            return ""  # macOS and Windows: MuJoCo's own default (CGL / WGL through GLFW) works
        elif osmesa_library():
            chosen = "osmesa"
        elif egl_works():
            chosen = "egl"
        else:
            chosen = "disable"
        env["MUJOCO_GL"] = chosen
    if chosen in ("osmesa", "egl"):
        env.setdefault("PYOPENGL_PLATFORM", chosen)
    return chosen


def backend() -> str:
    """The backend MuJoCo uses in this process (``MUJOCO_GL``; empty for MuJoCo's own default)."""
    return os.environ.get("MUJOCO_GL", "").strip().lower()


def rendering_unavailable() -> str | None:
    """Why MuJoCo cannot render in this process, or None when a backend is set."""
    if backend() in DISABLED:
        return (
            f"MuJoCo rendering is off (MUJOCO_GL={os.environ.get('MUJOCO_GL')}, metabench's choice where "
            f"neither libOSMesa nor a working EGL is found); `{INSTALL_HINT}` brings OSMesa"
        )
    return None
