"""What gc plans from, read without touching anything (status reads the same inputs).

``gather_family`` collects one family's records, releases, spec override,
leases and the processes using its prefixes into a ``retention.FamilyInput``;
``retention.plan_family`` decides from it. Kept apart from ``gc.collect``
(which applies a plan: kernelspec sync, trash, caches) so that ``envmgr
status`` loads only this side.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from envmgr.catalog.governing import SpecChoice
from envmgr.catalog.inventory import family_view, published_dirs
from envmgr.config import Config
from envmgr.define.spec import Retention
from envmgr.host.procscan import ProcessScan
from envmgr.kernels import lease
from envmgr.layout import FAILED_PREFIX, Layout

from .retention import FamilyInput, Usage, effective_policy


def failed_prefixes(layout: Layout, family: str, dirs: frozenset[str] | None = None) -> frozenset[str]:
    """Build ids with a ``.failed-<id>`` prefix (from ``dirs``, the envs folder's directories, if read)."""
    dirs = published_dirs(layout, family) if dirs is None else dirs
    return frozenset(name[len(FAILED_PREFIX):] for name in dirs if name.startswith(FAILED_PREFIX))


def gather_family(config: Config, family: str, choice: SpecChoice, scan: ProcessScan,
                  deferred: str | None = None) -> FamilyInput:
    """Read everything the planner needs about ``family`` (records, releases, leases, /proc)."""
    layout = config.layout
    dirs = published_dirs(layout, family)  # one listing of the envs folder for both
    view = family_view(config, family, choice.spec, dirs)
    override = choice.spec.retention if choice.spec else None
    source = f"spec {choice.source}" if override is not None and override != Retention() else "site"
    failed = failed_prefixes(layout, family, dirs)
    usage = {}
    for info in view.builds:
        build_id = info.build_id
        if info.record.deleted:
            continue
        if info.published:
            usage[build_id] = build_usage(layout, family, build_id, build_id, scan, probe_lease=True)
        elif build_id in failed:
            usage[build_id] = build_usage(layout, family, build_id, FAILED_PREFIX + build_id, scan,
                                          probe_lease=False)
    return FamilyInput(view, effective_policy(config.retention, override, source), usage, failed, deferred)


def build_usage(layout: Layout, family: str, build_id: str, entry: str, scan: ProcessScan,
                *, probe_lease: bool) -> Usage:
    """Usage of one build: its lease (published builds only) and the scan's pids."""
    path = f"{os.fspath(layout.lease_dir(family))}/{build_id}.lease"  # a str: one per build (status)
    held = probe_lease and lease.probe(path)
    found = lease.holders(Path(path)) if held else None
    notes = [found.note] if found is not None and found.note else []
    prefix_pids = scan.pids(family, entry)
    if (held or prefix_pids) and not scan.complete:
        notes.append("some processes could not be inspected")
    local = bool(prefix_pids) or (found is not None and (found.locks or found.locked_here))
    return Usage(held, found.pids if found else (), prefix_pids, socket.gethostname() if local else "",
                 "; ".join(notes), tuple(h.describe() for h in found.locks) if found else (),
                 bool(found and found.locked_here))
