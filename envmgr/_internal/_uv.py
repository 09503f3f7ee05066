"""The one adapter around uv (from PyPI): resolve pip requirements, install locked wheels.

Why uv and not pip: uv resolves for a *target* interpreter and platform that
need not exist yet (``--python-version``/``--python-platform``), so a lock is
made before any prefix is installed, for every platform of the spec, as
rattler does for conda packages; it writes a standard lock (PEP 751
``pylock.toml``) carrying each wheel's URL and sha256, which is exactly what a
conda-lock ``manager: pip`` entry needs; its installer takes
``--require-hashes --no-deps`` and writes RECORD, INSTALLER and entry points
like pip does; and it ships as a self-contained binary inside its wheel, so the
build host needs nothing but envmgr's own dependencies. pip would need the
target interpreter to resolve and a second tool to turn its report into URLs.

Everything is run with ``--no-config`` (no user or system uv.toml steers a
build) and with secrets only in the environment (a netrc file, see
``envmgr.credentials``), never on the command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envmgr.errors import EnvironmentProblem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TIMEOUT = 1800
# uv's platform names for conda subdirs (wheels up to manylinux_2_28 on Linux).
PLATFORMS = {"linux-64": "x86_64-manylinux_2_28", "linux-aarch64": "aarch64-manylinux_2_28",
             "osx-64": "x86_64-apple-darwin", "osx-arm64": "aarch64-apple-darwin",
             "win-64": "x86_64-pc-windows-msvc"}


@dataclass(frozen=True)
class UvRun:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class ResolvedWheel:
    name: str
    version: str
    url: str
    sha256: str
    size: int | None


def uv_bin() -> str:
    """The uv executable shipped in the ``uv`` wheel."""
    try:
        from uv import find_uv_bin
    except ImportError:
        raise EnvironmentProblem("uv is not installed; it resolves and installs pip packages",
                                 hint="install envmgr with its dependencies (pip install envmgr)") from None
    try:
        return os.fspath(find_uv_bin())
    except FileNotFoundError as exc:
        raise EnvironmentProblem(f"the uv executable is missing: {exc}") from None


def _base_env(extra: Mapping[str, str]) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "PATH",
                                                         "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY",
                                                         "HTTP_PROXY", "NO_PROXY")}
    return {**keep, "UV_NO_CONFIG": "1", "UV_PYTHON_DOWNLOADS": "never", "NO_COLOR": "1", **extra}


def run(args: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> UvRun:
    argv = [uv_bin(), *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd,
                              env=_base_env(env))
    except subprocess.TimeoutExpired:
        return UvRun(124, "", f"uv did not finish in {TIMEOUT} s")
    except OSError as exc:
        raise EnvironmentProblem(f"cannot run uv: {exc}") from exc
    return UvRun(proc.returncode, proc.stdout, proc.stderr)


def compile_args(requirements: Path, output: Path, *, python_version: str, platform: str,
                 index_url: str, priority_index: str, find_links: Sequence[Path],
                 constraints: Path, cache_dir: Path) -> list[str]:
    """``uv pip compile`` to a PEP 751 lock, wheels only, for the target interpreter."""
    args = ["pip", "compile", str(requirements), "-o", str(output), "--format", "pylock.toml",
            "--python-version", python_version, "--python-platform", PLATFORMS[platform],
            "--no-build", "--no-header", "--quiet", "--refresh", "--cache-dir", str(cache_dir),
            "--constraints", str(constraints), "--index", priority_index, "--default-index", index_url]
    for folder in find_links:
        args += ["--find-links", str(folder)]
    return args


def read_pylock(path: Path, skip_prefix: str) -> tuple[list[ResolvedWheel], list[tuple[str, str]]]:
    """(wheels to lock, [(name, version)] resolved from ``skip_prefix``: the conda stand-ins)."""
    data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    wheels, skipped = [], []
    for pkg in data.get("packages", []):
        choices = pkg.get("wheels") or []
        if any(str(w.get("url", "")).startswith(skip_prefix) for w in choices):
            skipped.append((pkg["name"], str(pkg["version"])))
            continue
        if not choices:
            raise EnvironmentProblem(f"uv locked {pkg.get('name')} without a wheel")
        best = _preferred(choices)
        sha = (best.get("hashes") or {}).get("sha256")
        if not sha:
            raise EnvironmentProblem(f"the index gave no sha256 for {best.get('url')}")
        wheels.append(ResolvedWheel(pkg["name"], str(pkg["version"]), best["url"], sha, best.get("size")))
    return wheels, skipped


def _preferred(choices: list[dict[str, Any]]) -> dict[str, Any]:
    """The pure wheel if there is one (it runs anywhere), else uv's first choice."""
    pure = [w for w in choices if str(w.get("url", "")).endswith("-none-any.whl")]
    return (pure or choices)[0]


def install_args(requirements: Path, python: Path, cache_dir: Path) -> list[str]:
    """Exactly the locked wheels: hashes required, no resolution, no builds, no index."""
    return ["pip", "install", "--python", str(python), "--no-deps", "--require-hashes", "--no-index",
            "--no-build", "--link-mode", "copy", "--cache-dir", str(cache_dir), "--quiet",
            "-r", str(requirements)]
