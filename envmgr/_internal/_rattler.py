"""The one adapter around py-rattler (0.28): index, solve, install, read records.

py-rattler's Python API changes between minor releases (renamed keywords,
records whose fields turn from strings into objects, async-only entry points),
so every call into it lives here and nowhere else. The rest of envmgr sees
plain functions, plain dicts and ``envmgr.errors`` exceptions.

Two hazards this module exists to contain:

* rattler's API is ``async``. Callers are synchronous, but may themselves run
  under an event loop (a Jupyter server extension, a test harness), where
  ``asyncio.run`` refuses to start; ``_run`` then uses a private thread.
* About one process in five that ran solve+install crashes *at interpreter
  exit* (SIGSEGV/SIGABRT in ``PyGILState_Release`` while finalizing: rattler's
  tokio threads outlive the interpreter). The work is complete by then, but
  the exit status is garbage. ``envmgr._internal._exit.hard_exit`` flushes
  what must be flushed and leaves with ``os._exit`` so finalization never runs.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

import rattler
from rattler import exceptions as rx
from rattler.index import index_fs
from rattler.platform import Subdir

from envmgr.errors import BuildFailed, EnvironmentProblem, UsageError
from envmgr.osfault import errno_in_text, problem, refused

RepoDataRecord = rattler.RepoDataRecord

DEFAULT_SUBDIRS: tuple[str, ...] = ("noarch", "linux-64")

T = TypeVar("T")


# -- running coroutines from synchronous code ---------------------------------
def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a rattler coroutine to completion from synchronous code.

    ``asyncio.run`` cannot be used while an event loop is already running in
    this thread, so in that case the coroutine gets a fresh loop in a helper
    thread and we block until it is done. Exceptions propagate unchanged.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=runner, name="envmgr-rattler", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


# -- networking -----------------------------------------------------------------------------
AUTH_FILE_ENV = "RATTLER_AUTH_FILE"
_TOKEN_IN_URL = re.compile(r"/t/[^/\s]+/")
_USERINFO = re.compile(r"(://)[^/\s@:]+(:[^/\s@]*)?@")


def _client() -> Any:
    """An HTTP client that authenticates from rattler's auth file, when envmgr configured one.

    py-rattler's default client sends no credentials; ``AuthenticationMiddleware``
    reads ``RATTLER_AUTH_FILE`` (set by ``envmgr.credentials.activate``) as its
    only source. Without that file the default client is kept, so hosts without
    credentials never consult a desktop keyring.
    """
    if not os.environ.get(AUTH_FILE_ENV):
        return None
    from rattler.networking import AuthenticationMiddleware, Client

    return Client([AuthenticationMiddleware()])


def _gateway() -> Any:
    client = _client()
    return rattler.Gateway(client=client) if client is not None else rattler.Gateway()


def redact(text: str) -> str:
    """Conda tokens (``/t/<token>/``) and URL user-info out of rattler's messages."""
    return _USERINFO.sub(r"\1****@", _TOKEN_IN_URL.sub("/t/****/", text))


def channel_error(exc: BaseException, urls: Sequence[str]) -> EnvironmentProblem:
    """A repodata failure, naming the channel (never a credential) and what to fix."""
    text = redact(str(exc))
    channel = next((u for u in urls if u.rstrip("/") in text), None) or ", ".join(urls)
    refused = re.search(r"\b(401|403)\b", text)
    if refused:
        host = urlparse(channel).hostname or channel
        return EnvironmentProblem(
            f"channel {channel} refused access (HTTP {refused.group(1)}): its credentials are "
            f"missing or wrong", hint=f"set the entry for {host} in the site's credentials_file "
                                      '(rattler\'s format: {"host": {"BearerToken": "…"}})')
    return EnvironmentProblem(f"cannot read channel repodata from {channel}: {text}",
                              hint="check that the channel is reachable (`envmgr doctor`)")


def probe_channel(url: str, subdirs: Sequence[str] = ("noarch",)) -> int:
    """Fetch a channel's repodata; the number of package names (raises EnvironmentProblem)."""
    try:
        found = _run(_gateway().names([channel_url(url)], list(subdirs)))
    except (rx.GatewayError, rx.FetchRepoDataError) as exc:
        raise channel_error(exc, [url]) from None
    return len(getattr(found, "names", found))


# -- channels -------------------------------------------------------------------
def channel_path(channel: str | os.PathLike[str]) -> Path | None:
    """The local directory of a ``file://`` URL or absolute path, else None."""
    text = os.fspath(channel)
    if text.startswith("file://"):
        return Path(unquote(urlparse(text).path))
    if "://" in text:
        return None
    return Path(text)


def channel_url(channel: str | os.PathLike[str]) -> str:
    """Normalize a channel to the URL rattler should see, checking local ones.

    Local channels must be absolute (a relative path would silently depend on
    the working directory of whichever process runs the build) and must exist
    and be indexed: rattler's own error for a missing ``repodata.json`` is a
    gateway error that does not say "this directory is missing".
    """
    path = channel_path(channel)
    if path is None:
        return os.fspath(channel)
    if not path.is_absolute():
        raise UsageError(f"channel {os.fspath(channel)!r} is not an absolute path or a URL",
                         hint="use an absolute path or a file:// URL")
    if not path.is_dir():
        raise EnvironmentProblem(f"channel directory {path} does not exist",
                                 hint="build it with `envmgr channel build`")
    if not (path / "noarch" / "repodata.json").is_file():
        raise EnvironmentProblem(f"channel directory {path} is not indexed "
                                 f"(no noarch/repodata.json)",
                                 hint="build it with `envmgr channel build`")
    return path.as_uri()


def index_channel(channel_dir: Path, subdirs: Iterable[str] = DEFAULT_SUBDIRS) -> None:
    """Write ``repodata.json`` for each subdir of a local channel.

    rattler's ``index_fs`` indexes only the subdir it is given when
    ``target_platform`` is set (despite its docstring, not ``noarch`` as
    well), so each subdir is indexed explicitly; missing subdirs are created
    empty because a channel without ``noarch/repodata.json`` cannot be
    queried at all. ``force=True`` re-reads every archive: correctness over
    speed, since packages may have been added or replaced in place.
    Sharded and zstd repodata are not written; plain JSON is all a
    ``file://`` channel needs and keeps the channel directory simple.
    """
    channel_dir = Path(channel_dir)
    if not channel_dir.is_dir():
        raise EnvironmentProblem(f"channel directory {channel_dir} does not exist")
    for subdir in subdirs:
        (channel_dir / subdir).mkdir(exist_ok=True)
        try:
            _run(index_fs(channel_dir, target_platform=Subdir(subdir), write_zst=False,
                          write_shards=False, force=True))
        except (rx.IoError, OSError) as exc:
            raise EnvironmentProblem(f"cannot index channel {channel_dir}/{subdir}: {exc}") from exc


# -- solving ----------------------------------------------------------------------
def _virtual_packages(platform: str, virtual_packages: Sequence[str] | None) -> list[Any]:
    """Virtual packages to solve with.

    ``None`` means "this machine" when solving for the current platform (what
    conda does) and "none" for a foreign platform, where detection would be
    meaningless. Strings are ``name=version=build`` (build optional).
    """
    if virtual_packages is None:
        if platform != str(Subdir.current()):
            return []
        return [vp.into_generic() for vp in rattler.VirtualPackage.detect()]
    result = []
    for text in virtual_packages:
        name, _, rest = text.partition("=")
        version, _, build = rest.partition("=")
        if not name.startswith("__") or not version:
            raise UsageError(f"bad virtual package {text!r}", hint="expected e.g. __glibc=2.28=0")
        result.append(rattler.GenericVirtualPackage(
            rattler.PackageName(name), rattler.Version(version), rattler.BuildString(build or "0")))
    return result


def solve(specs: list[str], channels: list[str], platform: str = "linux-64",
          virtual_packages: Sequence[str] | None = None) -> list[RepoDataRecord]:
    """Solve ``specs`` against ``channels`` for ``platform`` (plus noarch).

    A fresh ``rattler.Gateway`` is made on every call: a gateway caches
    repodata in memory for its lifetime, so reusing one after a channel was
    re-indexed would solve against the old package set.

    Raises ``UsageError`` for a malformed spec, ``EnvironmentProblem`` for a
    missing/unindexed local channel and ``BuildFailed`` (carrying the solver's
    explanation) when no solution exists.
    """
    if not channels:
        raise UsageError("no channels to solve against")
    if not specs:
        raise UsageError("nothing to solve: no package specs given")
    urls = [channel_url(c) for c in channels]
    try:
        match_specs = [rattler.MatchSpec(s) for s in specs]
    except rx.InvalidMatchSpecError as exc:
        raise UsageError(f"invalid package spec: {exc}") from exc
    vpkgs = _virtual_packages(platform, virtual_packages)
    try:
        return _run(rattler.solve(urls, match_specs, gateway=_gateway(),
                                  platforms=[platform, "noarch"], virtual_packages=vpkgs))
    except rx.SolverError as exc:
        raise BuildFailed(f"cannot solve {', '.join(specs)} from {', '.join(urls)}:\n{redact(str(exc))}",
                          hint="check the specs and which versions the channels hold") from None
    except (rx.GatewayError, rx.FetchRepoDataError) as exc:
        raise channel_error(exc, urls) from None


def _channel_of(url: str) -> str:
    """The channel a locked package URL came from (``<channel>/<subdir>/<file>``)."""
    return url.rsplit("/", 2)[0] if url.count("/") >= 3 else url


def _file_name(url: str) -> str:
    return unquote(urlparse(url).path).rsplit("/", 1)[-1]


def records_for_lock(packages: Sequence[Any], channels: list[str], platform: str = "linux-64"
                     ) -> list[RepoDataRecord]:
    """The channel records for locked packages, without solving.

    ``packages`` are objects with ``name``, ``version``, ``build``,
    ``subdir``, ``url`` and ``sha256`` (``envmgr.lockfile.LockedPackage``).
    Each is looked up in the channels' repodata (fresh gateway, see
    ``solve``) by exact name/version/build and matched by URL, else by file
    name; a package that is gone or whose sha256 differs from the lock is a
    ``BuildFailed``: installing something other than what was locked would
    silently break the lock's promise.
    """
    urls = [channel_url(c) for c in channels]
    specs = [f"{p.name} =={p.version} {p.build}" for p in packages]
    if not specs:
        return []
    try:
        found = _run(_gateway().query(urls, [platform, "noarch"], specs, recursive=False,
                                      channel_relations="disabled"))
    except (rx.GatewayError, rx.FetchRepoDataError) as exc:
        raise channel_error(exc, urls) from None
    by_url: dict[str, RepoDataRecord] = {}
    by_file: dict[tuple[str, str], RepoDataRecord] = {}
    for per_channel in found:
        for record in per_channel:
            by_url.setdefault(record.url, record)
            by_file.setdefault((record.subdir, record.file_name), record)
    records, missing, changed = [], [], []
    for pkg in packages:
        record = by_url.get(pkg.url) or by_file.get((pkg.subdir, _file_name(pkg.url)))
        if record is None:
            missing.append(f"{pkg.name}={pkg.version}={pkg.build} (locked from {_channel_of(pkg.url)})")
        elif pkg.sha256 and _hex(record.sha256) not in (None, pkg.sha256):
            changed.append(f"{pkg.name}={pkg.version}={pkg.build}")
        else:
            records.append(record)
    if missing or changed:
        detail = "".join([f"\n  not in the channels: {', '.join(missing)}" if missing else "",
                          f"\n  content differs from the lock (sha256): {', '.join(changed)}"
                          if changed else ""])
        raise BuildFailed(f"the lock cannot be installed from {', '.join(urls)}:{detail}",
                          hint="re-solve (build without --from-lock) or restore the channel")
    return records


# -- installing -------------------------------------------------------------------
def _requested_specs(specs: Sequence[str]) -> list[Any] | None:
    """Specs for ``install(requested_specs=...)``.

    py-rattler 0.28's ``install`` forwards its ``MatchSpec`` objects to the
    Rust side unchanged, which rejects them ("'MatchSpec' object is not an
    instance of 'PyMatchSpec'"); so the wrapped inner object is passed.
    """
    if not specs:
        return None
    try:
        parsed = [rattler.MatchSpec(s) for s in specs]
    except rx.InvalidMatchSpecError as exc:
        raise UsageError(f"invalid package spec: {exc}") from exc
    return [getattr(m, "_match_spec", m) for m in parsed]


def install(records: list[RepoDataRecord], prefix: Path, cache_dir: Path,
            target_prefix: Path | None = None, requested_specs: Sequence[str] = ()) -> None:
    """Link ``records`` into ``prefix``, patching in ``target_prefix``.

    envmgr installs into a staging directory and renames it into place, so
    the prefix written into text files and entry-point shebangs must be the
    *final* path: ``target_prefix`` (rattler's ``alternative_target_prefix``).
    ``requested_specs`` lands in each ``conda-meta`` record, which is what
    conda tooling reads to tell explicit requests from dependencies.
    Link scripts are never run: packages are data, not code to trust.
    """
    prefix = Path(prefix)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        _run(rattler.install(
            records, target_prefix=prefix, cache_dir=cache_dir, show_progress=False,
            execute_link_scripts=False, client=_client(),
            requested_specs=_requested_specs(requested_specs),
            alternative_target_prefix=Path(target_prefix) if target_prefix is not None else None))
    except OSError as exc:
        if refused(exc):
            raise problem(exc, "install", prefix) from exc
        raise EnvironmentProblem(f"cannot install into {prefix}: {exc}") from exc
    except (rx.InstallerError, rx.TransactionError, rx.LinkError, rx.ExtractError,
            rx.IoError, rx.CacheDirError) as exc:
        if (os_exc := errno_in_text(str(exc))) is not None:  # a full disk is not a bad package
            raise problem(os_exc, "install", prefix) from None
        text = redact(str(exc))
        if re.search(r"\b(401|403)\b", text):
            raise channel_error(exc, sorted({r.channel or "" for r in records})) from None
        raise BuildFailed(f"installing {len(records)} packages into {prefix} failed: {text}") from None


# -- reading records ----------------------------------------------------------------
def _hex(digest: bytes | None) -> str | None:
    return digest.hex() if digest else None


def _noarch(record: RepoDataRecord) -> str | None:
    kind = record.noarch
    if kind.python:
        return "python"
    if kind.generic:
        return "generic"
    return None


def record_to_dict(record: RepoDataRecord) -> dict[str, Any]:
    """A solved record as plain JSON-able data (what conda-lock.yml needs).

    Hashes become hex strings, names the normalized name, ``noarch`` one of
    ``"python"``, ``"generic"`` or ``None``.
    """
    return {
        "name": record.name.normalized,
        "version": str(record.version),
        "build": str(record.build),
        "build_number": record.build_number,
        "subdir": record.subdir,
        "noarch": _noarch(record),
        "depends": list(record.depends),
        "constrains": list(record.constrains),
        "url": record.url,
        "channel": record.channel,
        "fn": record.file_name,
        "md5": _hex(record.md5),
        "sha256": _hex(record.sha256),
        "size": record.size,
    }


def records_to_dicts(records: Iterable[RepoDataRecord]) -> list[dict[str, Any]]:
    """``record_to_dict`` for each record, sorted by name for stable output."""
    return sorted((record_to_dict(r) for r in records), key=lambda d: d["name"])


# -- validating -------------------------------------------------------------------------
def parse_match_spec(text: str) -> None:
    """Raise ValueError (with rattler's reason) unless ``text`` is a conda match spec."""
    try:
        rattler.MatchSpec(text)
    except rx.InvalidMatchSpecError as exc:
        raise ValueError(str(exc)) from None


def match_spec_name(text: str) -> str:
    """The package name a match spec (``"numpy >=1.26"``, ``"conda-forge::numpy"``) asks for.

    Raises ValueError for an invalid spec or one without an exact name (a glob).
    """
    try:
        spec = rattler.MatchSpec(text)
    except rx.InvalidMatchSpecError as exc:
        raise ValueError(str(exc)) from None
    name = spec.name.normalized if spec.name is not None else None
    if not name or any(ch in name for ch in "*?["):
        raise ValueError(f"{text!r} does not name one package")
    return name


def check_version_spec(text: str) -> None:
    """Raise ValueError (with rattler's reason) unless ``text`` is a conda version spec."""
    try:
        rattler.VersionSpec(text)
    except rx.InvalidVersionSpecError as exc:
        raise ValueError(str(exc)) from None


def version_matches(version: str, spec: str) -> bool:
    """Whether ``version`` satisfies the conda version spec ``spec`` (``"<2"``, ``"1.*|>=3"``).

    conda's ordering and operators, not PEP 440's: ``1.0a1 < 1.0``,
    ``2.0 == 2``, ``1.*`` and ``|``/``,`` combinations behave as conda does.
    A version rattler cannot parse matches nothing (fail closed).
    """
    try:
        return bool(rattler.VersionSpec(spec).matches(rattler.Version(version)))
    except (rx.InvalidVersionSpecError, rx.InvalidVersionError):
        return False


# -- versions and metadata for advisories and SBOMs ----------------------------------------
def conda_version(text: str) -> Any:
    """``text`` as a comparable conda version (rattler's ordering: ``1.0a1 < 1.0``, ``2 == 2.0``).

    Raises ValueError with rattler's reason when it is not a conda version.
    """
    try:
        return rattler.Version(text)
    except rx.InvalidVersionError as exc:
        raise ValueError(str(exc)) from None


def record_licenses(records: Iterable[RepoDataRecord]) -> dict[str, str]:
    """Package name -> the license its channel declares (empty names are left out)."""
    return {r.name.normalized: str(r.license) for r in records if getattr(r, "license", None)}
