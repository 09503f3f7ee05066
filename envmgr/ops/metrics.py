"""Prometheus metrics for `envmgr serve` (``<prefix>metrics``), made with prometheus-client.

Every scrape reads the same report as ``envmgr status`` (``collect_status``,
without the disk walk unless its cache is fresh) into a fresh registry, so the
numbers are current and cannot disagree with the terminal. Kernel counts are
this host's (the service's host): scrape the service on every host that runs
kernels, or read ``envmgr_lease_other_host``.

Advisories come from the last stored ``envmgr advisories check`` (the same
file status and doctor read); until a check was stored the metric is absent
rather than a misleading zero.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from envmgr.clock import parse_iso, utcnow
from envmgr.config import Config
from envmgr.ops.advisories import advisory_counts
from envmgr.ops.status import StatusReport, collect_status

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StatusCollector:
    """One scrape: gauges from a status report."""

    def __init__(self, config: Config, report: StatusReport):
        self.config, self.report = config, report

    def collect(self) -> Iterator[Metric]:
        fams = self.report.families
        builds = GaugeMetricFamily("envmgr_builds", "Builds per family and state", labels=["family", "state"])
        disk = GaugeMetricFamily("envmgr_disk_bytes", "Disk used by a family's prefixes", labels=["family"])
        ok = GaugeMetricFamily("envmgr_last_run_ok", "1 if the family's last build run did not fail",
                               labels=["family", "status"])
        age = GaugeMetricFamily("envmgr_last_run_age_seconds", "Seconds since the family's last build run",
                                labels=["family"])
        kernels = GaugeMetricFamily("envmgr_kernels", "Kernels running on a build on this host",
                                    labels=["family", "build"])
        other = GaugeMetricFamily("envmgr_lease_other_host", "1 if another host holds the build's lease",
                                  labels=["family", "build"])
        days = GaugeMetricFamily("envmgr_stable_days_left", "Days of support left per stable release",
                                 labels=["family", "release", "build"])
        for f in fams:
            for state, count in _build_states(self.config, f.family).items():
                builds.add_metric([f.family, state], count)
            if f.disk_bytes is not None:
                disk.add_metric([f.family], f.disk_bytes)
            if f.last_run:
                status = str(f.last_run.get("status"))
                ok.add_metric([f.family, status], 0 if status == "failed" else 1)
                when = parse_iso(f.last_run.get("when"))
                if when is not None:
                    age.add_metric([f.family], max(0, int((utcnow() - when).total_seconds())))
            for k in f.kernels:
                kernels.add_metric([f.family, k.build_id], k.kernels)
                other.add_metric([f.family, k.build_id], 1 if k.other_host else 0)
            for r in f.stable:
                days.add_metric([f.family, r["release"], r["build_id"]], r["days_left"])
        yield from (builds, disk, ok, age, kernels, other, days)
        counts = advisory_counts(self.config.layout)
        if counts is not None:
            adv = GaugeMetricFamily("envmgr_advisories", "Open security advisories per build",
                                    labels=["family", "build"])
            for (family, build_id), count in counts.items():
                adv.add_metric([family, build_id], count)
            yield adv


def _build_states(config: Config, family: str) -> dict[str, int]:
    from envmgr.catalog.inventory import family_view

    counts: dict[str, int] = {}
    for info in family_view(config, family).builds:
        counts[info.state] = counts.get(info.state, 0) + 1
    return counts


def metrics_text(config: Config) -> bytes:
    """The Prometheus text exposition of the site, now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_StatusCollector(config, collect_status(config, disk=True)))
    return generate_latest(registry)
