"""Which Python the channel is built for: probe an interpreter.

The channel's ``python`` package, the ABI of compiled packages and the
evaluation of requirement markers all follow from one CPython interpreter
(the running one by default). ``interpreter_info`` describes it; the probe
runs in that interpreter, so it works for a Python other than envmgr's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from envmgr.errors import UsageError

PLATFORM = "linux-64"
"""The conda subdir of compiled packages; markers are evaluated for it."""

# Runs in the target interpreter (in-process or via ``python -c``), so it may
# use only the standard library. It defines ``info``.
_PROBE = r'''
import json, os, platform, sys

def _base_executable():
    short = "python%d.%d" % sys.version_info[:2]
    for cand in (getattr(sys, "_base_executable", None),
                 os.path.join(sys.base_prefix, "bin", short), sys.executable):
        if cand and os.path.isfile(cand):
            return os.path.realpath(cand)
    return os.path.realpath(sys.executable)

_iv = sys.implementation.version
_impl = "%d.%d.%d" % (_iv.major, _iv.minor, _iv.micro)
if _iv.releaselevel != "final":
    _impl += _iv.releaselevel[0] + str(_iv.serial)
info = {
    "executable": sys.executable,
    "base_executable": _base_executable(),
    "version": platform.python_version(),
    "version_info": list(sys.version_info[:2]),
    "implementation": sys.implementation.name,
    "path": [p for p in sys.path if p],
    "markers": {
        "implementation_name": sys.implementation.name,
        "implementation_version": _impl,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": "%d.%d" % sys.version_info[:2],
        "sys_platform": sys.platform,
    },
}
'''


@dataclass(frozen=True)
class Interpreter:
    """The Python the channel is built for (its packages, markers and ABI)."""

    executable: str
    base_executable: str
    version: str
    version_info: tuple[int, int]
    path: tuple[str, ...]
    markers: dict[str, str]

    @property
    def short(self) -> str:
        return f"{self.version_info[0]}.{self.version_info[1]}"

    @property
    def abi(self) -> str:
        return f"cp{self.version_info[0]}{self.version_info[1]}"

    @property
    def site_packages(self) -> str:
        return f"lib/python{self.short}/site-packages"


def interpreter_info(python_exe: str = sys.executable) -> Interpreter:
    """Describe ``python_exe``; in-process when it is the running interpreter.

    Markers are forced to linux-64 values: the channel is for linux-64, even
    if someone builds it on an odd machine.
    """
    if os.path.abspath(python_exe) == os.path.abspath(sys.executable):
        namespace: dict[str, Any] = {}
        exec(compile(_PROBE, "<envmgr-probe>", "exec"), namespace)
        info = namespace["info"]
    else:
        info = _probe_subprocess(python_exe)
    if info["implementation"] != "cpython":
        raise UsageError(f"{python_exe} is {info['implementation']}; only CPython is supported")
    markers = {**info["markers"], "os_name": "posix", "sys_platform": "linux",
               "platform_system": "Linux", "platform_machine": "x86_64"}
    return Interpreter(executable=info["executable"], base_executable=info["base_executable"],
                       version=info["version"], version_info=tuple(info["version_info"]),
                       path=tuple(info["path"]), markers=markers)


def _probe_subprocess(python_exe: str) -> dict[str, Any]:
    if not os.path.isfile(python_exe):
        raise UsageError(f"python interpreter {python_exe} does not exist")
    try:
        out = subprocess.run([python_exe, "-I", "-c", _PROBE + "\nprint(json.dumps(info))"],
                             check=True, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise UsageError(f"cannot run {python_exe}: {exc}") from exc
    return json.loads(out)
