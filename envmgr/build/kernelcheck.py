"""Start a kernel and execute one cell: the real proof that an environment works.

Used by the build's smoke test (on the staged prefix, before publication) and
by ``envmgr doctor`` (each family's latest kernel, through its kernelspec).
"""

from __future__ import annotations

import json
import queue
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from envmgr.errors import BuildFailed

CELL = "import sys; print(sys.prefix)"


@dataclass(frozen=True)
class KernelCheck:
    prefix: str  # what sys.prefix printed in the kernel
    seconds: float  # start to first result


def run_cell(argv: Sequence[str], env: dict[str, str] | None = None, *, code: str = CELL,
             timeout: float = 120, kernel_name: str = "envmgr-check",
             kernels_dir: Path | None = None) -> KernelCheck:
    """Start a kernel, run ``code``, shut it down; the kernel's stderr is kept for errors.

    With ``kernels_dir``, the installed kernelspec ``kernel_name`` is used as is
    (the path a notebook takes); otherwise a private kernelspec with ``argv``.
    """
    with tempfile.TemporaryDirectory(prefix="envmgr-kcheck-") as tmp:
        if kernels_dir is None:
            kernels_dir = Path(tmp) / "kernels"
            spec_dir = kernels_dir / kernel_name
            spec_dir.mkdir(parents=True)
            (spec_dir / "kernel.json").write_text(json.dumps(
                {"argv": list(argv), "display_name": kernel_name, "language": "python"}))
        with open(Path(tmp) / "stderr", "w+b") as stderr:
            try:
                return _check(kernels_dir, kernel_name, env, code, timeout, stderr)
            except BuildFailed as exc:
                stderr.seek(0)
                tail = stderr.read().decode(errors="replace").strip().splitlines()[-8:]
                if tail:
                    exc.message += "\n  kernel stderr:\n  " + "\n  ".join(tail)
                raise


def _check(kernels_dir: Path, kernel_name: str, env: dict[str, str] | None, code: str,
           timeout: float, stderr: BinaryIO) -> KernelCheck:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    start = time.monotonic()
    ksm = KernelSpecManager(kernel_dirs=[str(kernels_dir)], ensure_native_kernel=False)
    km = KernelManager(kernel_name=kernel_name, kernel_spec_manager=ksm)
    try:
        km.start_kernel(env=env, stderr=stderr) if env is not None else km.start_kernel(stderr=stderr)
    except Exception as exc:  # noqa: BLE001 - any start failure is the answer
        raise BuildFailed(f"the kernel did not start: {exc}") from exc
    client = km.client()
    try:
        client.start_channels()
        client.wait_for_ready(timeout=timeout)
        output = _execute(client, code, timeout)
    except (RuntimeError, TimeoutError, queue.Empty) as exc:
        raise BuildFailed(f"the kernel started but did not run a cell: {exc}") from exc
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)
    return KernelCheck(prefix=output.strip(), seconds=round(time.monotonic() - start, 3))


def _execute(client, code: str, timeout: float) -> str:  # noqa: ANN001 - BlockingKernelClient
    msg_id = client.execute(code)
    chunks: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            chunks.append(content["text"])
        elif kind == "error":
            raise RuntimeError(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(chunks)
    raise TimeoutError(f"no result within {timeout} s")
