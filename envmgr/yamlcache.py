"""Parsed configuration files, cached per user: most commands need no YAML parser at all.

Every command reads the site configuration, and ruamel's round-trip parser
(kept for file:line:column errors) costs ~20-45 ms to import and run: a tenth
of an unchanged nightly and of ``envmgr status`` on a site with a config file
(issue 14). The document rarely changes, so the plain data of a document that
validated is kept in ``$XDG_CACHE_HOME/envmgr/config-docs.json`` (default
``~/.cache``), keyed on (absolute path, size, mtime_ns, inode, ctime_ns), like
the spec cache (``define.speccache``). Only the parse is skipped: the caller
validates the cached document exactly as a freshly parsed one, and when that
finds a problem it parses the file again to report real positions.

The cache is the user's own file: one (or a folder) that another account
owns or may write is ignored, so ``sudo envmgr`` with a user's HOME cannot
be steered by that user; one that cannot be read, parsed or written is
ignored too. Documents
that JSON cannot represent exactly (YAML dates, tags) are never cached.
``ENVMGR_NO_CACHE=1`` turns the cache off.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from envmgr._internal import _json
from envmgr.fsutil import atomic_write_text, stat_key

FORMAT = 1
MAX_ENTRIES = 64  # tests and ad-hoc configs come and go: keep the newest only
Key = list[int]


def user_cache_dir() -> Path | None:
    """``$XDG_CACHE_HOME/envmgr`` (default ``~/.cache/envmgr``); None when caches are off."""
    if os.environ.get("ENVMGR_NO_CACHE") == "1":
        return None
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except (KeyError, RuntimeError):  # no home directory: no cache
            return None
    return Path(base) / "envmgr"


def _store_path() -> Path | None:
    folder = user_cache_dir()
    return None if folder is None else folder / "config-docs.json"


def _key(path: Path) -> tuple[str, Key] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return str(path.resolve()), list(stat_key(st))


def ours(path: Path) -> bool:
    """Owned by this user and writable by nobody else (checked for the file and its folder).

    ``sudo envmgr`` may keep the caller's HOME: a cache another user can write
    must not decide root's channels or root.
    """
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def read_private(store: Path) -> Any:
    """The JSON in the user's own cache file ``store`` (see ``ours``), else None."""
    if not (ours(store.parent) and ours(store)):
        return None
    try:
        with open(store, "rb") as handle:
            return _json.loads(handle.read())
    except (OSError, ValueError):
        return None


def write_private(store: Path, text: str) -> None:
    """Write a cache file 0600 in a 0700 folder of the user's own; best effort (a cache)."""
    try:
        store.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not ours(store.parent):  # someone else's folder: neither read nor write it
            return
        atomic_write_text(store, text, mode=0o600, durable=False)
    except OSError:
        return


def _read_store(store: Path) -> dict[str, Any]:
    data = read_private(store)
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("docs"), dict):
        return {}
    return data["docs"]


def cached_doc(path: Path) -> tuple[bool, Any]:
    """(True, document) if ``path`` is unchanged since its document was stored, else (False, None)."""
    store, key = _store_path(), _key(path)
    if store is None or key is None:
        return False, None
    entry = _read_store(store).get(key[0])
    if not isinstance(entry, dict) or entry.get("key") != key[1]:
        return False, None
    return True, entry.get("doc")


def _plain(doc: Any) -> Any:
    """ruamel's round-trip types as plain JSON types; ValueError for anything JSON cannot hold."""
    if doc is None or isinstance(doc, bool):
        return doc
    if type(doc).__name__ == "ScalarBoolean":  # ruamel's bool-with-anchor is an int subclass
        return bool(doc)
    if isinstance(doc, str):
        return str(doc)
    if isinstance(doc, int):
        return int(doc)
    if isinstance(doc, float):
        return float(doc)
    if isinstance(doc, dict):
        if not all(isinstance(k, str) for k in doc):
            raise ValueError("non-string key")
        return {str(k): _plain(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_plain(v) for v in doc]
    raise ValueError(f"{type(doc).__name__} is not JSON")


def store_doc(path: Path, doc: Any) -> None:
    """Remember ``path``'s validated document (best effort: a cache that cannot be written is none)."""
    store, key = _store_path(), _key(path)
    if store is None or key is None:
        return
    try:
        plain = _plain(doc)
    except ValueError:
        return
    docs = _read_store(store)
    docs.pop(key[0], None)
    docs[key[0]] = {"key": key[1], "doc": plain}
    while len(docs) > MAX_ENTRIES:
        docs.pop(next(iter(docs)))
    write_private(store, json.dumps({"format": FORMAT, "docs": docs}))
