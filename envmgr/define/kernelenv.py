"""Which variables a spec's ``env:`` may not set: the ones the launcher and the kernel rely on.

``env:`` lands in the published kernelspec, and Jupyter applies it before the
launcher runs. ``PATH`` decides whether the launcher finds ``realpath`` and
its lock helper; ``LD_PRELOAD``/``LD_LIBRARY_PATH`` change every program it
starts; ``PYTHONPATH``/``PYTHONHOME`` make the kernel import from outside its
build; ``ENVMGR_*`` and ``CONDA_PREFIX`` are what the launcher sets to tell
the kernel (and gc) which build it runs. A spec that sets one of them is
refused with file:line, unless the site config names it in
``kernel_env_allow`` (then the build's smoke test, which starts the kernel
through the launcher with this very env, still has to pass).
"""

from __future__ import annotations

from pathlib import Path


from envmgr.define.spec import Problem, Spec, SpecError
from envmgr.yamlcheck import YamlChecker, read_yaml

PROTECTED = frozenset({"PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "PYTHONHOME",
                       "CONDA_PREFIX"})
PROTECTED_PREFIXES = ("ENVMGR_",)


def protected(name: str) -> bool:
    return name in PROTECTED or name.startswith(PROTECTED_PREFIXES)


def env_problems(spec: Spec, allowed: tuple[str, ...] | frozenset[str] = ()) -> list[Problem]:
    """One problem per protected name in ``spec.env`` that the site does not allow."""
    bad = [name for name in spec.env if protected(name) and name not in allowed]
    if not bad:
        return []
    file = str(spec.path) if spec.path else "(spec)"
    positions: dict[str, tuple[int, int]] = {}
    if spec.source_text:
        doc = read_yaml(Path(file), spec.source_text, SpecError)
        env_map = doc.get("env") if isinstance(doc, dict) else None
        if isinstance(env_map, dict):
            positions = {name: YamlChecker.key_pos(env_map, name) for name in bad}
    checker = YamlChecker(file)
    for name in bad:
        checker.add(positions.get(name, (0, 0)), f"env.{name}",
                    f"{name} must not be set by a spec: the kernel launcher and the kernel rely on it "
                    "(the kernel might not start, or run code from outside its build); remove it, or "
                    "ask the hub admins to add it to kernel_env_allow in the site config")
    return checker.problems


def check_kernel_env(spec: Spec, allowed: tuple[str, ...] = ()) -> None:
    """Raise SpecError (exit 2) if ``spec.env`` sets a protected name the site does not allow."""
    if problems := env_problems(spec, allowed):
        raise SpecError(problems)
