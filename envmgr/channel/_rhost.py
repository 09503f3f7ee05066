"""Demo-channel ``r-base`` and ``r-irkernel`` for the R installed on the host.

The same idea as the demo ``python`` (a venv-style link to the host
interpreter): no conda channel is reachable, so R environments are made of the
host's R (Debian's ``r-base-core``) and its IRkernel (``r-cran-irkernel``).

* ``r-base`` puts ``bin/R`` and ``bin/Rscript`` in the prefix: small scripts
  that run the host R with ``R_LIBS_SITE``/``R_LIBS_USER`` set to the prefix's
  own ``lib/R/library``, so the host's site library is *not* visible — an R
  package is available in an environment only if the environment installed it
  (as ``include-system-site-packages = false`` does for Python). R's base and
  recommended packages (``R_HOME/library``) are R itself and stay visible.
* ``r-irkernel`` links IRkernel and every package it needs from the host's
  site library into ``lib/R/library``.

The scripts find their prefix from their own path, so they work in the staged
prefix (smoke test) and after the rename that publishes it.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from envmgr.channel._condapkg import CondaPackage, PkgFile, conda_version
from envmgr.channel._interp import PLATFORM
from envmgr.channel._pydists import content_digest

SITE_LIBRARIES = ("/usr/lib/R/site-library", "/usr/local/lib/R/site-library")
R_LIBRARY = "lib/R/library"
_DEP_FIELD = re.compile(r"^(Depends|Imports|LinkingTo):(.*(?:\n[ \t].*)*)", re.MULTILINE)


@dataclass(frozen=True)
class HostR:
    r_bin: str  # R_HOME/bin/R, the real script behind /usr/bin/R
    rscript: str
    version: str
    site_library: Path | None
    irkernel_version: str | None


def _description(package_dir: Path) -> str:
    try:
        return (package_dir / "DESCRIPTION").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _field(text: str, name: str) -> str | None:
    match = re.search(rf"^{name}:\s*(\S+)", text, re.MULTILINE)
    return match.group(1) if match else None


def probe_host_r() -> HostR | None:
    """The host's R, if there is one (None: the channel simply has no R packages)."""
    found = shutil.which("R")
    if found is None:
        return None
    real = os.path.realpath(found)
    r_home = Path("/usr/lib/R") if real == "/usr/bin/R" or "/usr/lib/R" in real else Path(real).parent.parent
    r_bin = r_home / "bin" / "R"
    rscript = shutil.which("Rscript")
    version = _field(_description(r_home / "library" / "base"), "Version")
    if not r_bin.is_file() or rscript is None or version is None:
        return None
    site = next((Path(p) for p in SITE_LIBRARIES if (Path(p) / "IRkernel").is_dir()), None)
    irkernel = _field(_description(site / "IRkernel"), "Version") if site else None
    return HostR(str(r_bin), os.path.realpath(rscript), version, site, irkernel)


def _wrapper(target: str) -> bytes:
    """The prefix is where the script is (not a patched-in path: the smoke test runs the
    staged prefix before it is renamed to the path conda's placeholder would name)."""
    return (f"#!/bin/sh\n"
            f"# envmgr demo r-base: the host's R ({target}) with only this environment's library\n"
            f'prefix=$(CDPATH= cd -- "$(dirname -- "$0")/.." && pwd -P) || exit 69\n'
            f'R_LIBS_SITE="$prefix/{R_LIBRARY}"\n'
            f'R_LIBS_USER="$prefix/{R_LIBRARY}"\n'
            f"export R_LIBS_SITE R_LIBS_USER\n"
            f'exec "{target}" "$@"\n').encode()


def r_packages(host: HostR) -> list[CondaPackage]:
    """``r-base`` and, where the host has IRkernel, ``r-irkernel``."""
    version, _ = conda_version(host.version)
    digest = content_digest(host.r_bin, host.version)
    base = CondaPackage(
        name="r-base", version=version, build=f"host_{digest[:8]}", subdir=PLATFORM,
        files=[PkgFile("bin/R", _wrapper(host.r_bin), mode=0o755),
               PkgFile("bin/Rscript", _wrapper(host.rscript), mode=0o755),
               PkgFile(f"{R_LIBRARY}/.envmgr-r-library",
                       b"R packages of this environment (R_LIBS_SITE points here).\n")],
        license="GPL-2.0-or-later", summary=f"The host's R {host.version} ({host.r_bin})")
    packages = [base]
    if host.site_library is not None and host.irkernel_version is not None:
        names = _closure(host.site_library, "IRkernel")
        ik_version, _ = conda_version(host.irkernel_version)
        packages.append(CondaPackage(
            name="r-irkernel", version=ik_version,
            build=f"host_{content_digest(str(host.site_library), *names)[:8]}", subdir=PLATFORM,
            depends=[f"r-base {version}.*"],
            files=[PkgFile(f"{R_LIBRARY}/{name}", symlink=str(host.site_library / name)) for name in names],
            license="MIT", summary=f"The host's IRkernel {host.irkernel_version} and its R dependencies"))
    return packages


def _closure(site: Path, root: str) -> list[str]:
    """``root`` and the site-library packages it needs (Depends/Imports/LinkingTo), sorted."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen or not (site / name).is_dir():
            continue  # base/recommended packages live in R_HOME/library: part of R itself
        seen.add(name)
        for _field_name, body in _DEP_FIELD.findall(_description(site / name)):
            todo += [dep.split("(")[0].strip() for dep in body.replace("\n", " ").split(",")
                     if dep.split("(")[0].strip() and dep.split("(")[0].strip() != "R"]
    return sorted(seen)
