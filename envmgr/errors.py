"""The one user-facing exception family and the exit codes it maps to.

Core code raises these; only ``envmgr.cli`` catches them, prints the message
(and hint) and exits with ``exit_code``. Exit codes are a contract that cron
and monitoring rely on (docs/admin-guide.md lists them).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # unexpected failure, or a check that found problems
EXIT_USAGE = 2  # bad input: a spec, the config or the command line
EXIT_BUILD_FAILED = 3  # solve, install or smoke test failed; nothing published
EXIT_BUSY = 4  # another process holds the lock (--no-wait)
EXIT_ENVIRONMENT = 5  # the machine said no: disk full, permission denied, channel missing
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT (128 + 2, as shells report it)


class EnvmgrError(Exception):
    """An error a user can act on: a message, an optional hint, an exit code."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def to_json(self) -> dict:
        return {"error": type(self).__name__, "message": self.message, "hint": self.hint,
                "exit_code": self.exit_code}


class UsageError(EnvmgrError):
    exit_code = EXIT_USAGE


class ConfigError(EnvmgrError):
    exit_code = EXIT_USAGE


class BuildFailed(EnvmgrError):
    exit_code = EXIT_BUILD_FAILED


class Busy(EnvmgrError):
    exit_code = EXIT_BUSY


class EnvironmentProblem(EnvmgrError):
    """The machine refused: disk full, permission denied, a channel path missing."""

    exit_code = EXIT_ENVIRONMENT


class NotFound(EnvmgrError):
    """A named family, build or release does not exist."""

    exit_code = EXIT_USAGE
