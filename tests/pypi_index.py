"""Test helpers: wheels the tests build, and HTTP servers on 127.0.0.1 (PEP 503 index, channels).

Nothing is fetched: every wheel is written here with zipfile (a real wheel: METADATA,
WHEEL, RECORD, entry points), and the servers are http.server in a thread.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import shutil
import threading
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path


def make_wheel(folder: Path, name: str, version: str, requires: Sequence[str] = (),
               scripts: dict[str, str] | None = None) -> Path:
    """A pure-Python wheel: module ``name`` (dashes → _) with ``__version__`` and ``main()``."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f'__version__ = "{version}"\n\n\ndef main():\n    print("{name}", __version__)\n',
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                            + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: envmgr-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if scripts:
        files[f"{dist}/entry_points.txt"] = "[console_scripts]\n" + "".join(
            f"{k} = {v}\n" for k, v in scripts.items())
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def publish(index: Path, wheel: Path) -> None:
    """Put ``wheel`` on the PEP 503 index in ``index`` and rewrite its pages."""
    project = wheel.name.split("-")[0].replace("_", "-").lower()
    folder = index / project
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(wheel, folder / wheel.name)
    links = []
    for file in sorted(folder.glob("*.whl")):
        sha = hashlib.sha256(file.read_bytes()).hexdigest()
        links.append(f'<a href="{html.escape(file.name)}#sha256={sha}">{html.escape(file.name)}</a><br>')
    (folder / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    projects = sorted(p.name for p in index.iterdir() if p.is_dir())
    (index / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "\n".join(
        f'<a href="{p}/">{p}</a><br>' for p in projects) + "\n</body></html>\n")


class _Handler(http.server.SimpleHTTPRequestHandler):
    token: str | None = None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")  # an index page changes when a test publishes
        super().end_headers()

    def _allowed(self) -> bool:
        if self.token is None or self.headers.get("Authorization") == f"Bearer {self.token}":
            return True
        if self.headers.get("Authorization", "").startswith("Basic "):
            user_pass = base64.b64decode(self.headers["Authorization"][6:]).decode()
            if user_pass.split(":", 1)[-1] == self.token:
                return True
        self.send_error(401, "token required")  # a wrong password is a 401 too, as a real index says
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self._allowed():
            super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802
        if self._allowed():
            super().do_HEAD()


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up after a 401 are expected


@contextmanager
def serve(directory: Path, token: str | None = None) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (a free port); with ``token``, require it
    (``Authorization: Bearer <token>``, or basic auth with the token as password)."""
    handler = type("Handler", (_Handler,), {"token": token})
    server = _QuietServer(("127.0.0.1", 0), partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
