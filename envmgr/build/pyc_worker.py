"""Fill a staged prefix's ``__pycache__`` from the content-addressed ``.pyc`` cache.

Run by ``envmgr.pycache`` as a *script* with the environment's own python
(``<staging>/bin/python pyc_worker.py``), because the bytecode must be the
environment interpreter's, not envmgr's. It therefore imports only the
standard library. The request arrives as JSON on stdin; the report leaves as
one JSON line on stdout.

For each source file (paths relative to the prefix): hash its bytes as
installed (after rattler's prefix replacement), look the digest up in
``<cache>/<magic>/opt-<n>/<ab>/<digest>.pyc``, compile only the misses (each
distinct digest once, on every core), then hardlink the entry to the file's
``__pycache__`` name. A file that does not compile (Python 2 test fixtures)
leaves a ``<digest>.err`` marker so later builds do not try again.

The code object's ``co_filename`` inside a cached entry is the file's path
*relative to the prefix*: an entry serves every prefix, and the import system
replaces ``co_filename`` with the path the module was really imported from
(``_imp._fix_co_filename``), so tracebacks name the published prefix.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import py_compile
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor

CHUNK = 32  # files per pool task: small files compile in ~1 ms, so batch the round trips


MAGIC = importlib.util.MAGIC_NUMBER.hex()


def entry_path(cache: str, digest: str, optimize: int) -> str:
    return f"{cache}/{MAGIC}/opt-{optimize}/{digest[:2]}/{digest}.pyc"


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def _compile(job: tuple[str, str, str, int]) -> bool:
    """Compile one source into its cache entry (write a temp file, then rename)."""
    source, display, entry, optimize = job
    os.makedirs(os.path.dirname(entry), exist_ok=True)
    temp = f"{entry}.{os.getpid()}.tmp"
    try:
        py_compile.compile(source, cfile=temp, dfile=display, doraise=True, optimize=optimize,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except (py_compile.PyCompileError, SyntaxError, ValueError, UnicodeError):
        with open(entry[: -len(".pyc")] + ".err", "w", encoding="utf-8"):
            pass
        return False
    os.replace(temp, entry)
    return True


def _try_link(entry: str, target: str, made: set[str]) -> str:
    """Hardlink ``entry`` to ``target``: "linked", "exists" (target there) or "missing" (no entry).

    One ``link`` call per file in the common case; ``__pycache__`` is created on
    the first miss in a directory. Across filesystems (EXDEV) a copy is made.
    """
    try:
        os.link(entry, target)
        return "linked"
    except FileExistsError:
        return "exists"
    except FileNotFoundError:
        folder = os.path.dirname(target)
        if folder in made or not os.path.isdir(os.path.dirname(folder)):
            return "missing"
        os.makedirs(folder, exist_ok=True)
        made.add(folder)
        return _try_link(entry, target, made)
    except OSError:  # EXDEV, EMLINK: a private copy still works
        if not os.path.exists(entry):
            return "missing"
        shutil.copy2(entry, target)
        return "linked"


def _compile_all(jobs: list[tuple[str, str, str, int]], workers: int) -> int:
    if not jobs:
        return 0
    if workers <= 1 or len(jobs) < 2 * CHUNK:
        return sum(map(_compile, jobs))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(_compile, jobs, chunksize=CHUNK))


def run(request: dict) -> dict:
    started = time.monotonic()
    prefix, cache, optimize = request["prefix"], request["cache"], int(request.get("optimize", 0))
    files: list[str] = request["files"]
    workers = int(request.get("workers") or os.cpu_count() or 1)
    opt = "" if optimize == 0 else optimize
    sources = [os.path.join(prefix, rel) for rel in files]
    digests = [_digest(s) for s in sources]  # serial: threads measured no faster on small files
    pending: list[tuple[str, str]] = []  # (entry, target) to link once the misses are compiled
    jobs: dict[str, tuple[str, str, str, int]] = {}
    known_bad = shipped = hits = 0
    made: set[str] = set()
    for rel, source, digest in zip(files, sources, digests):
        if digest is None:
            continue
        target = importlib.util.cache_from_source(source, optimization=opt)
        entry = entry_path(cache, digest, optimize)
        outcome = _try_link(entry, target, made)
        if outcome == "linked":
            hits += 1
        elif outcome == "exists":
            shipped += 1  # the package brought its own bytecode: leave it
        elif os.path.exists(entry[: -len(".pyc")] + ".err"):
            known_bad += 1
        else:
            jobs.setdefault(digest, (source, rel, entry, optimize))
            pending.append((entry, target))
    compiled = _compile_all(list(jobs.values()), workers)
    linked = hits
    for entry, target in pending:
        linked += _try_link(entry, target, made) == "linked"
    return {"magic": MAGIC, "cache_tag": sys.implementation.cache_tag,
            "files": len(files), "compiled": compiled, "failed": len(jobs) - compiled,
            "known_bad": known_bad, "shipped": shipped, "linked": linked,
            "hits": hits, "seconds": round(time.monotonic() - started, 3)}


if __name__ == "__main__":
    report = run(json.load(sys.stdin))
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
