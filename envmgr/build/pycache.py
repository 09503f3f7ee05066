"""The content-addressed ``.pyc`` cache: compile each installed source once, ever.

Prefixes hardlink their package files from the package cache, so the sources
of two builds of one package set are the same bytes; their bytecode is too.
The cache lives in ``PKGS_DIR/.envmgr-pyc/`` (inside the package cache, hence
on the filesystem the prefixes already hardlink from):

    <magic>/opt-<n>/<ab>/<sha256 of the installed source>.pyc   one entry per content
    <magic>/opt-<n>/<ab>/<sha256>.err                            the source does not compile

The key is the source as installed (after rattler's prefix replacement, so a
file with an embedded prefix gets its own entry per prefix), the
interpreter's magic number and the optimisation level. A build hardlinks the
entries into the staged prefix's ``__pycache__``; only misses are compiled,
on every core, by ``pyc_worker.py`` running under the environment's own
python. Entries are *unchecked-hash* pycs (PEP 552): the import system never
stats or re-reads the source, which suits prefixes that never change after
publication (docs/design.md, "Bytecode").

What is compiled is the ``pyc`` policy (``config.PycPolicy``): the site's
``pyc:`` section with the spec's ``pyc:`` keys over it (``compile: all | noarch | none``, ``exclude:``
globs matched against the path inside the prefix). gc prunes entries no prefix
links any more (link count 1), like unused packages.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envmgr.osfault import errno_in_text, problem
from envmgr.config import PycPolicy
from envmgr.errors import BuildFailed

CACHE_NAME = ".envmgr-pyc"
WORKER = Path(__file__).with_name("pyc_worker.py")
WORKER_TIMEOUT = 3600


def cache_dir(pkgs_dir: Path) -> Path:
    return Path(pkgs_dir) / CACHE_NAME


@dataclass(frozen=True)
class PycReport:
    """What one build's bytecode step did (kept in the build log and the outcome)."""

    files: int
    compiled: int
    hits: int
    failed: int
    known_bad: int
    shipped: int
    linked: int
    seconds: float

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PycReport:
        return cls(**{k: doc.get(k, 0) for k in cls.__dataclass_fields__})

    def summary(self) -> str:
        return (f"{self.files} sources: {self.hits} from the .pyc cache, {self.compiled} compiled, "
                f"{self.failed + self.known_bad} do not compile, {self.shipped} shipped their own; "
                f"{self.linked} linked in {self.seconds} s")


# -- what to compile -----------------------------------------------------------------------------

def _package_files(prefix: Path) -> Iterable[tuple[bool, list[str]]]:
    """(is noarch python, files) of every package installed in ``prefix`` (from conda-meta)."""
    meta = prefix / "conda-meta"
    for path in sorted(meta.glob("*.json")) if meta.is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        noarch = doc.get("noarch")
        is_noarch = noarch == "python" or (isinstance(noarch, dict) and noarch.get("type") == "python")
        yield is_noarch, [f for f in doc.get("files", []) if isinstance(f, str)]


def select_sources(prefix: Path, policy: PycPolicy) -> list[str]:
    """Package ``.py`` files under site-packages the policy compiles, relative to ``prefix``."""
    if policy.compile == "none":
        return []
    chosen: list[str] = []
    for is_noarch, files in _package_files(prefix):
        if policy.compile == "noarch" and not is_noarch:
            continue
        chosen += [f for f in files if f.endswith(".py") and "/site-packages/" in f
                   and not any(fnmatch.fnmatchcase(f, glob) for glob in policy.exclude)]
    return sorted(set(chosen))


# -- the build step ------------------------------------------------------------------------------

def fill_pycache(prefix: Path, python: Path, pkgs_dir: Path, policy: PycPolicy,
                 env: dict[str, str], log_raw: Callable[[str], None]) -> PycReport:
    """Give ``prefix``'s sources their bytecode from the cache, compiling only the misses."""
    files = select_sources(prefix, policy)
    if not files:
        return PycReport(0, 0, 0, 0, 0, 0, 0, 0.0)
    cache = cache_dir(pkgs_dir)
    cache.mkdir(parents=True, exist_ok=True)
    request = json.dumps({"prefix": str(prefix), "cache": str(cache), "optimize": 0, "files": files})
    try:
        proc = subprocess.run([str(python), "-I", str(WORKER)], input=request, env=env,
                              capture_output=True, text=True, timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BuildFailed(f"compiling bytecode did not finish in {WORKER_TIMEOUT} s") from None
    log_raw(proc.stderr)
    if proc.returncode != 0 and (exc := errno_in_text(proc.stderr + proc.stdout)) is not None:
        raise problem(exc, "pyc")  # a full disk or a refused write is the machine's no (exit 5)
    try:
        report = PycReport.from_json(json.loads(proc.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError, TypeError):
        tail = "\n  ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise BuildFailed(f"compiling bytecode failed (exit {proc.returncode}):\n  {tail}") from None
    return report


# -- gc ---------------------------------------------------------------------------------------------

@dataclass
class PycPrune:
    entries: int = 0  # .pyc entries no prefix links
    markers: int = 0  # .err markers and leftover temp files
    bytes: int = 0
    exact: bool = True  # False: a dry run that read deletion sizes from records counts a lower bound

    def to_json(self) -> dict[str, Any]:
        return {"entries": self.entries, "markers": self.markers, "bytes": self.bytes,
                "exact": self.exact}


def _walk_files(root: Path) -> Iterable[os.DirEntry[str]]:
    stack = [str(root)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        yield entry
        except (FileNotFoundError, NotADirectoryError):
            continue


def prune(pkgs_dir: Path, *, apply: bool,
          leaving: dict[tuple[int, int], int] | None = None) -> PycPrune:
    """Remove (or, ``apply=False``, count) cache entries that no prefix links.

    An entry's own link is 1; every prefix using it adds one. ``leaving``
    maps (dev, inode) to links about to disappear (a dry run's planned
    deletions), so a dry run reports what the real run would prune after
    deleting them. The caller holds every build lock: an install in progress
    may be about to link an entry.
    """
    result = PycPrune()
    leaving = leaving or {}
    for entry in _walk_files(cache_dir(pkgs_dir)):
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        size = st.st_blocks * 512
        if entry.name.endswith(".pyc"):
            if st.st_nlink - leaving.get((st.st_dev, st.st_ino), 0) > 1:
                continue
            result.entries += 1
        else:  # .err markers are cheap to recreate; .tmp files are a killed compile's leftovers
            result.markers += 1
        result.bytes += size
        if apply:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
    if apply:
        _remove_empty_dirs(cache_dir(pkgs_dir))
    return result


def _remove_empty_dirs(root: Path) -> None:
    for dirpath, _dirs, _files in os.walk(root, topdown=False):  # children before parents
        if dirpath != str(root):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


def entry_count(pkgs_dir: Path) -> int:
    """How many compiled entries the cache holds (for reports and tests)."""
    return sum(1 for e in _walk_files(cache_dir(pkgs_dir)) if e.name.endswith(".pyc"))
