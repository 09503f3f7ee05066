"""Keep a family's kernelspecs in step with its builds and stable releases.

Called after every kernel-affecting change (a new latest, promote, retire,
rollback, an expired release) and on every build run, so an interrupted run
is repaired by the next one. Expired stable releases get no kernel: their
builds then become collectable.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from envmgr.config import Config
from envmgr.catalog.inventory import FamilyView, family_view
from envmgr.kernels import retired
from envmgr.kernels.kernelspecs import (
    SEPARATOR,
    KernelFamily,
    StableKernel,
    SyncResult,
    kernel_name,
    remove_family_kernels,
    sync_family_kernels,
)
from envmgr.catalog.governing import recorded_spec
from envmgr.define.spec import Spec
from envmgr.layout import LATEST


def kernel_family(config: Config, view: FamilyView, spec: Spec) -> KernelFamily:
    latest = next((b for b in view.builds if b.build_id == view.latest), None)
    releases = [StableKernel(r.release, r.build_id,
                              _started(view, r.build_id), r.until.isoformat())
                for r in view.releases if not r.expired() and _published(view, r.build_id)]
    return KernelFamily(
        family=spec.name, display_name=spec.display_name, group=spec.group, template=spec.kernel,
        env=spec.env,
        mem_limit_mib=spec.memory_limit // 1024**2 if spec.memory_limit else None,
        latest_build=view.latest if latest and latest.published else None,
        latest_built=latest.record.finished if latest else None,
        stable=releases,
    )


def _started(view: FamilyView, build_id: str) -> str:
    return next((b.record.finished or b.record.started for b in view.builds if b.build_id == build_id), "")


def _published(view: FamilyView, build_id: str) -> bool:
    return any(b.build_id == build_id and b.published for b in view.builds)


def sync_kernels(config: Config, family: str, spec: Spec | None = None) -> SyncResult | None:
    """Write the family's kernelspecs; None if the family has nothing to run yet."""
    latest = config.layout.latest_build(family)
    spec = spec or recorded_spec(config, family, latest)
    if spec is None:
        return None
    view = family_view(config, family, spec)
    fam = kernel_family(config, view, spec)
    entries = retired.refresh(Path(config.kernels_dir), family, live_kernels(fam), expired_releases(view))
    fam = replace(fam, resources={retired.RESOURCE_NAME: retired.resource_bytes(entries)})
    return sync_family_kernels(Path(config.kernels_dir), config.layout, fam)


def live_kernels(fam: KernelFamily) -> list[retired.LiveKernel]:
    """The kernels ``fam`` is about to have (successor candidates for retired releases)."""
    live = [retired.LiveKernel(kernel_name(fam.family, rel.release), f"{fam.display_name}{SEPARATOR}"
                               f"{rel.release}", rel.release, rel.support_until) for rel in fam.stable]
    if fam.latest_build is not None:
        live.append(retired.LiveKernel(kernel_name(fam.family, LATEST),
                                       f"{fam.display_name}{SEPARATOR}{LATEST}", None))
    return live


def expired_releases(view: FamilyView) -> list[retired.Retirement]:
    """Releases whose support ended: their kernels go, their notebooks need a successor."""
    return [retired.Retirement(kernel_name(view.family, r.release), view.family, r.release, r.build_id,
                               r.until.isoformat(), retired.today(), reason="expired")
            for r in view.releases if r.expired()]


def remove_kernels(config: Config, family: str) -> list[str]:
    return remove_family_kernels(Path(config.kernels_dir), family)
