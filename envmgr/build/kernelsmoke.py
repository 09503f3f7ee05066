"""The kernel smoke test of a staged build: start the environment's own kernel, execute a cell.

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

from collections.abc import Callable
from pathlib import Path

from envmgr.errors import BuildFailed
from .kernelcheck import run_cell
from envmgr.lockfile import PackageSet
from envmgr.define.spec import Spec

R_CELL = 'cat(R.version.string, "\\n", .libPaths()[1], sep = "")'


def kernel_argv(template: str, prefix: Path) -> list[str] | None:
    if template == "python":
        return [str(prefix / "bin/python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    if template == "r":
        return [str(prefix / "bin/R"), "--slave", "-e", "IRkernel::main()", "--args", "{connection_file}"]
    return None


def has_kernel(template: str, packages: PackageSet) -> bool:
    names = packages.by_name()
    return (template == "python" and "ipykernel" in names) or (template == "r" and "r-irkernel" in names)


def run_kernel_smoke_test(spec: Spec, packages: PackageSet, prefix: Path, env: dict[str, str],
                          log: Callable[[str], None]) -> None:
    """Start the kernel of ``spec``'s template in ``prefix`` and check what the cell reports."""
    argv = kernel_argv(spec.kernel, prefix)
    if argv is None or not has_kernel(spec.kernel, packages):
        return
    log("smoke test: start the kernel and execute a cell")
    if spec.kernel == "python":
        check = run_cell(argv, env={**env, **spec.env})
        if Path(check.prefix) != prefix:
            raise BuildFailed(f"the kernel ran in {check.prefix!r}, not in the built prefix {prefix}")
    else:
        check = run_cell(argv, env={**env, **spec.env}, code=R_CELL)
        lines = check.prefix.splitlines()
        if len(lines) != 2 or not lines[0].startswith("R version") or not lines[1].startswith(str(prefix)):
            raise BuildFailed(f"the R kernel did not report the built prefix {prefix}: {check.prefix!r}")
        log(f"R kernel: {lines[0]}")
    log(f"kernel ready and executed a cell in {check.seconds} s")
