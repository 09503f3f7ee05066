"""Install a lock's ``manager: pip`` entries into the staged prefix, after the conda packages.

The lock is the truth: uv installs exactly the locked wheel files
(``name @ url --hash=sha256:…``) with ``--require-hashes --no-deps
--no-index``, so nothing is resolved, nothing newer is picked up and a file
whose content changed on the index fails the build (exit 3) instead of
landing in a published prefix. uv writes each distribution's ``RECORD``,
``INSTALLER`` and console scripts into the prefix, so ``pip list`` inside the
environment shows them.

The prefix is staged under another name than its final one. rattler writes
the final path into conda's files itself; uv does not know the final path, so
the scripts it writes are re-pointed from the staging path to the final one
here (only the ``#!`` lines and ``exec`` trampolines at the head of files in
``bin/``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from envmgr._internal import _uv
from envmgr.config import Config
from envmgr.credentials import load_credentials, netrc_for, redact
from envmgr.errors import BuildFailed, EnvironmentProblem
from envmgr.lockfile import LockedPackage
from envmgr.results import Progress

HEAD_BYTES = 1024  # shebangs and pip/uv's /bin/sh trampolines live in the first lines


def requirement_lines(packages: list[LockedPackage]) -> str:
    return "".join(f"{p.name} @ {p.url} --hash=sha256:{p.sha256}\n" for p in packages)


def install_pip_packages(config: Config, packages: list[LockedPackage], staging: Path, final: Path,
                         log: Progress, raw: Progress) -> None:
    """uv-install ``packages`` into ``staging``; scripts end up pointing at ``final``."""
    if not packages:
        return
    python = staging / "bin" / "python"
    if not python.exists():
        raise BuildFailed(f"{len(packages)} pip packages are locked but the environment has no "
                          f"bin/python", hint="add python to the spec's dependencies")
    creds = load_credentials(config.credentials_file)
    log(f"installing {len(packages)} pip packages with uv (hashes required, no dependency resolution)")
    with tempfile.TemporaryDirectory(prefix="envmgr-pipinstall-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(requirement_lines(packages))
        args = _uv.install_args(requirements, python, config.pkgs_dir / "uv-cache")
        with netrc_for(creds, [p.url for p in packages]) as env:
            result = _uv.run(args, env=env, cwd=Path(tmp))
    output = redact((result.stdout + result.stderr).strip(), creds)
    raw(output)
    if result.returncode != 0:
        tail = "\n  ".join(output.splitlines()[-12:])
        problem = EnvironmentProblem if "Permission denied" in output or "No space" in output else BuildFailed
        raise problem(f"installing the locked pip packages failed (uv exit {result.returncode}):\n  {tail}",
                      hint="a changed or missing wheel on the index: re-lock (build without --from-lock)")
    fixed = repoint_scripts(staging, final)
    if fixed:
        log(f"pointed {fixed} pip-installed scripts at {final}")


def repoint_scripts(staging: Path, final: Path) -> int:
    """Replace the staging path by the final one at the head of scripts in ``bin/``."""
    bin_dir = staging / "bin"
    old, new = str(staging).encode(), str(final).encode()
    count = 0
    for entry in sorted(bin_dir.iterdir()) if bin_dir.is_dir() else ():
        if entry.is_symlink() or not entry.is_file():
            continue
        with entry.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
        if not head.startswith(b"#!") or old not in head:
            continue
        data = entry.read_bytes()
        entry.write_bytes(head.replace(old, new) + data[len(head):])
        count += 1
    return count
