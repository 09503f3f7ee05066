"""What the staff page shows: groups, families, latest builds, stable releases, builds running.

Each family's entry is ``envmgr status``'s (``status.collect_status``, built
on ``inventory``, ``familylock``, ``records`` and ``stable``) plus what the
page acts on: whether it can be built here, the job running or last run from
the page, and the build Roll back would return to. The page and the terminal
therefore never disagree. Returns plain JSON
(the page's ``api/state`` document, docs/hub-service.md describes it).
"""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..errors import EnvmgrError
from ..familylock import holder_info
from envmgr.catalog.inventory import family_view
from envmgr.release.rollback import choose_target
from envmgr.define.spec import Spec, SpecError, load_specs, spec_files
from envmgr.ops.status import collect_status
from .jobs import RUNNING, Job, JobStore, running_build

OTHER_GROUP = "Other"


class SpecCache:
    """The specs in specs_dir, parsed again only when a file changed.

    Parsing YAML is most of what ``api/state`` costs (the page asks every few
    seconds while a build runs); a file's (name, size, mtime) says whether it changed.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._value: tuple[dict[str, Spec], list[str]] = ({}, [])

    def get(self, config: Config) -> tuple[dict[str, Spec], list[str]]:
        if not config.specs_dir.is_dir():
            return {}, [f"specs directory {config.specs_dir} does not exist: nothing can be built"]
        try:
            files = spec_files([config.specs_dir])
            key = tuple((f.name, st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()])
        except (OSError, EnvmgrError) as exc:
            return {}, [f"cannot read the specs directory {config.specs_dir}: {exc}"]
        if key != self._key:
            self._value, self._key = site_specs(config), key
        return self._value


def site_specs(config: Config) -> tuple[dict[str, Spec], list[str]]:
    """The specs staff can build (specs_dir), and the problems that hide some of them."""
    if not config.specs_dir.is_dir():
        return {}, [f"specs directory {config.specs_dir} does not exist: nothing can be built"]
    try:
        return {s.name: s for s in load_specs([config.specs_dir])}, []
    except SpecError as exc:
        return {}, [exc.message]


def page_state(config: Config, jobs: JobStore, specs_cache: SpecCache | None = None) -> dict[str, Any]:
    """The ``api/state`` document: ``envmgr status`` per family plus what the page acts on."""
    specs, problems = (specs_cache or SpecCache()).get(config)
    report = collect_status(config, disk=False)
    status = {f.family: f.to_json() for f in report.families}
    names = sorted(set(status) | set(specs))
    families = [family_entry(config, name, specs.get(name), status.get(name), jobs) for name in names]
    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in families:
        groups.setdefault(entry["group"], []).append(entry)
    return {
        "generated": report.generated,
        "root": str(config.root),
        "problems": problems,
        "warnings": [w.to_json() for w in report.warnings],
        "groups": [{"group": g, "families": groups[g]} for g in sorted(groups, key=_group_order)],
        "in_progress": [{"family": f["family"], **f["running"]} for f in families if f["running"]],
    }


def _group_order(group: str) -> tuple[bool, str]:
    return (group == OTHER_GROUP, group.lower())


def _never_built(family: str, spec: Spec | None) -> dict[str, Any]:
    """The status fields of a family that has a spec but no build yet."""
    return {"family": family, "group": (spec.group if spec else "") or OTHER_GROUP,
            "display_name": spec.display_name if spec else family, "latest": None, "last_run": None,
            "last_build": None, "stable": [], "building": None, "warnings": []}


def family_entry(config: Config, family: str, spec: Spec | None, status: dict[str, Any] | None,
                 jobs: JobStore) -> dict[str, Any]:
    entry = dict(status or _never_built(family, spec))
    entry["group"] = entry.get("group") or OTHER_GROUP
    recent = jobs.jobs(family)
    running_job = next((j for j in recent if j.state == RUNNING), None)
    entry.update(
        buildable=spec is not None,
        last_result=last_result(entry),
        running=running_entry(config, family, running_job),
        last_job=_job_summary(recent[0]) if recent else None,
        rollback_target=_rollback_target(config, family) if status else None,
    )
    return entry


def last_result(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The last run (built/unchanged/held/failed), else the newest build's status."""
    if entry.get("last_run"):
        return {k: entry["last_run"].get(k) for k in ("when", "status", "build_id", "error", "message")}
    last = entry.get("last_build")
    if not last:
        return None
    return {"when": last.get("finished") or last.get("started"), "status": last.get("status"),
            "build_id": last.get("build_id"), "error": last.get("error"), "message": ""}


def running_entry(config: Config, family: str, job: Job | None) -> dict[str, Any] | None:
    """Who is building the family now, and which log shows it (job log or build.log)."""
    holder = holder_info(config.layout, family)
    if holder is None and job is None:
        return None
    holder = holder or {}
    return {"job_id": job.job_id if job else None,
            "user": job.user if job else holder.get("user"),
            "since": job.started if job else holder.get("since"),
            "step": holder.get("step", "starting"),
            "pid": holder.get("pid"), "host": holder.get("host"),
            "build_id": running_build(config.layout, family, holder)}


def _job_summary(job: Job) -> dict[str, Any]:
    return {"job_id": job.job_id, "state": job.state, "user": job.user, "started": job.started,
            "ended": job.ended, "outcome": job.outcome}


def _rollback_target(config: Config, family: str) -> str | None:
    """The build Roll back would make latest (rollback.choose_target), or None."""
    try:
        return choose_target(family_view(config, family), None)
    except EnvmgrError:
        return None
