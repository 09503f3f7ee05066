"""The build's kernel smoke test: start the kernel exactly as users will, before publication.

Not the build's python with a hand-made argv: the kernelspec that will be
published (same template, launcher options, memory limit and the spec's
``env:``), run through the same launcher, in a plain environment like a
single-user server's. The only differences are forced by publication not
having happened yet: the launcher's target is the staged prefix (with
``--staged``) and the kernelspec lives in a private kernels dir. So a spec
whose kernel cannot start through the launcher -- ``env: {PATH: /nowhere}``
(where the site allowed it), a broken ``LD_PRELOAD``, a template that does
not match the build -- fails the build and is never published.

Which kernel depends on the spec's kernel template, and the test runs only when
the environment has that kernel (a Python spec without ipykernel, or an R spec
without IRkernel, has nothing to start):

* ``python`` + ``ipykernel``: the cell prints ``sys.prefix``, which must be the
  staged prefix (not the host's or the server's environment).
* ``r`` + ``r-irkernel``: the cell prints ``R.version.string`` and
  ``.libPaths()[1]``, which must be the staged prefix's library (the
  environment's packages, not the host's site library).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from envmgr.build.kernelcheck import run_cell
from envmgr.define.spec import Spec
from envmgr.errors import BuildFailed
from envmgr.kernels.kernelspecs import KernelFamily, desired_kernels, launcher_source
from envmgr.kernels.lease import ensure_lease
from envmgr.layout import Layout
from envmgr.lockfile import PackageSet

USER_PATH = "/usr/local/bin:/usr/bin:/bin"
R_CELL = 'cat(R.version.string, "\\n", .libPaths()[1], sep = "")'


def has_kernel(template: str, packages: PackageSet) -> bool:
    """Whether the environment holds the kernel its template starts."""
    names = packages.by_name()
    return (template == "python" and "ipykernel" in names) or (template == "r" and "r-irkernel" in names)


def user_env() -> dict[str, str]:
    """A plain environment like a single-user server's: the build's own PATH, nothing of the
    prefix (the launcher adds that); the spec's env: comes on top, from the kernelspec."""
    keep = {k: os.environ[k] for k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "ENVMGR_LOCK_PYTHON")
            if k in os.environ}
    # No bytecode written by the smoke test: __pycache__ holds exactly what the pyc policy says.
    return {**keep, "PATH": os.environ.get("PATH") or USER_PATH, "PYTHONDONTWRITEBYTECODE": "1"}


def staged_kernelspec(layout: Layout, spec: Spec, build_id: str, staging: Path,
                      launcher: Path) -> tuple[str, dict]:
    """The latest kernelspec this build will publish, pointed at the staged prefix."""
    fam = KernelFamily(family=spec.name, display_name=spec.display_name, group=spec.group,
                       template=spec.kernel, env=spec.env,
                       mem_limit_mib=spec.memory_limit // 1024**2 if spec.memory_limit else None,
                       latest_build=build_id)
    plan = desired_kernels(layout, fam, launcher=launcher)[0]
    kernel_json = json.loads(json.dumps(plan.kernel_json))
    argv = kernel_json["argv"]
    cut = argv.index("--")
    kernel_json["argv"] = [*argv[:cut], "--staged", "--", str(staging), *argv[cut + 2:]]
    return plan.name, kernel_json


def launcher_smoke_test(layout: Layout, spec: Spec, build_id: str, staging: Path,
                        log) -> float:  # noqa: ANN001 - build.BuildLog
    """Start the staged build's kernel through the launcher and run a cell; seconds taken."""
    log("smoke test: start the kernel through its kernelspec and the launcher, execute a cell")
    ensure_lease(layout, spec.name, build_id)  # the launcher refuses to start without it
    with tempfile.TemporaryDirectory(prefix="envmgr-smoke-") as tmp:
        launcher = Path(tmp) / "launcher.sh"
        launcher.write_bytes(launcher_source())
        launcher.chmod(0o755)
        name, kernel_json = staged_kernelspec(layout, spec, build_id, staging, launcher)
        kernels_dir = Path(tmp) / "kernels"
        (kernels_dir / name).mkdir(parents=True)
        (kernels_dir / name / "kernel.json").write_text(json.dumps(kernel_json))
        if spec.kernel == "r":
            check = run_cell([], env=user_env(), kernel_name=name, kernels_dir=kernels_dir, code=R_CELL)
        else:
            check = run_cell([], env=user_env(), kernel_name=name, kernels_dir=kernels_dir)
    _check_prefix(spec, check.prefix, staging, log)
    log(f"kernel ready through the launcher and executed a cell in {check.seconds} s")
    return check.seconds


def _check_prefix(spec: Spec, reported: str, staging: Path, log) -> None:  # noqa: ANN001
    """The cell must have run in the staged prefix (Python: sys.prefix; R: its library)."""
    if spec.kernel == "r":
        lines = reported.splitlines()
        if len(lines) != 2 or not lines[0].startswith("R version") \
                or not os.path.realpath(lines[1]).startswith(os.path.realpath(staging)):
            raise BuildFailed(f"the R kernel did not report the built prefix {staging}: {reported!r}")
        log(f"R kernel: {lines[0]}")
    elif os.path.realpath(reported) != os.path.realpath(staging):
        raise BuildFailed(f"the kernel ran in {reported!r}, not in the built prefix {staging}")
