"""The package's layer contract (pyproject `[tool.importlinter]`) holds, and really fails on a violation.

`scripts/run-tests` runs `lint-imports` on the tree before pytest; these tests
show the contract is not vacuous: each one copies the package, adds one
forbidden import (up a layer, a cycle hidden in a function body, rich outside
the CLI), checks that `lint-imports` fails naming it, restores the file and
checks that it passes again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package and its contract, so the real tree is never edited."""
    root = tmp_path_factory.mktemp("layers")
    shutil.copytree(REPO / "envmgr", root / "envmgr", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy shadows the editable install
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, text=True,
                          capture_output=True, timeout=120)


VIOLATIONS = [
    # (file, line added, contract that must break, how lint-imports names the offending import)
    ("envmgr/catalog/records.py", "from envmgr.gc import collect  # noqa\n",
     "Lifecycle layers", "envmgr.catalog.records -> envmgr.gc.collect"),
    ("envmgr/gc/retention.py",
     "\n\ndef _late() -> None:\n    from envmgr.gc import collect  # noqa\n",
     "No import cycles", ".retention -> .collect"),
    ("envmgr/ops/status.py", "import rich.text  # noqa\n",
     "rich is imported only by envmgr.cli", "envmgr.ops.status -> rich"),
]


def test_forbidden_imports_break_the_contract_until_they_are_removed(tree: Path) -> None:
    """One lint run with all three violations (each named), one after restoring: it passes again."""
    originals = {rel: (tree / rel).read_text(encoding="utf-8") for rel, *_ in VIOLATIONS}
    try:
        for rel, line, _, _ in VIOLATIONS:
            (tree / rel).write_text(originals[rel] + line, encoding="utf-8")
        broken = lint_imports(tree)
        assert broken.returncode != 0, broken.stdout
        assert "0 kept, 3 broken" in broken.stdout, broken.stdout
        report = broken.stdout.split("Broken contracts", 1)[-1]
        for _, _, contract, offender in VIOLATIONS:
            assert contract in report and offender in report, (offender, report)
    finally:
        for rel, text in originals.items():
            (tree / rel).write_text(text, encoding="utf-8")
    kept = lint_imports(tree)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "3 kept, 0 broken" in kept.stdout
