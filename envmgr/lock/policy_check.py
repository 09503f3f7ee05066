"""`envmgr spec check --policy FILE`: would these specs' locks pass the package policy?

The check a pull request to the specs repository runs: the policy file is
validated, every spec is validated and solved (nothing is installed), and
every locked package the policy refuses is reported with the dependency chain
that pulls it in. All families are checked; one failing does not hide others.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from ..config import Config
from ..errors import EXIT_BUILD_FAILED, EXIT_OK, EXIT_USAGE, EnvmgrError
from envmgr.lock.solve import solve_spec
from envmgr.define.policy import Policy, PolicyFileError, Violation, check_package_set, load_policy
from ..results import Progress, no_progress
from envmgr.define.spec import Problem, Spec, SpecError, load_specs


@dataclass
class FamilyCheck:
    family: str
    packages: int = 0
    violations: list[Violation] = field(default_factory=list)
    error: EnvmgrError | None = None  # the spec could not be locked

    @property
    def exit_code(self) -> int:
        if self.error is not None:
            return self.error.exit_code
        return EXIT_BUILD_FAILED if self.violations else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"family": self.family, "ok": self.exit_code == EXIT_OK, "packages": self.packages,
                "violations": [v.to_json() for v in self.violations],
                "error": self.error.to_json() if self.error else None}


@dataclass
class PolicyCheckResult:
    policy_path: Path
    policy: Policy | None
    problems: list[Problem] = field(default_factory=list)  # in the policy or the spec files
    families: list[FamilyCheck] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """2: a file is invalid; 3: a policy violation (as for lock/build); else the worst error."""
        if self.problems:
            return EXIT_USAGE
        return max((f.exit_code for f in self.families), default=EXIT_OK)

    def to_json(self) -> dict[str, Any]:
        return {"policy": str(self.policy_path), "valid": self.exit_code == EXIT_OK,
                "problems": [p.to_json() for p in self.problems],
                "families": [f.to_json() for f in self.families]}


def check_specs_against_policy(config: Config, paths: list[Path], policy_path: Path,
                               progress: Progress = no_progress) -> PolicyCheckResult:
    """Validate ``policy_path`` and ``paths``; solve each spec and check its locked set."""
    result = PolicyCheckResult(policy_path, None)
    specs: list[Spec] = []
    try:
        result.policy = load_policy(policy_path)
    except PolicyFileError as exc:
        result.problems.extend(exc.problems)
    try:
        specs = load_specs(paths)
    except SpecError as exc:
        result.problems.extend(exc.problems)
    if result.problems or result.policy is None:
        return result
    # Check against the file given, not the site's policy (which may be the one under review).
    solver_config = dataclasses.replace(config, policy_file=None)
    result.families = [_check_family(solver_config, spec, result.policy, progress) for spec in specs]
    return result


def _check_family(config: Config, spec: Spec, policy: Policy, progress: Progress) -> FamilyCheck:
    check = FamilyCheck(spec.name)
    try:
        lock = solve_spec(config, spec, progress)
    except EnvmgrError as exc:
        check.error = exc
        return check
    check.packages = len(lock.host_set.packages)
    for platform in sorted(lock.sets):
        check.violations += check_package_set(policy, lock.sets[platform], spec.dependencies)
    return check
