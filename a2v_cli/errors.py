"""One error hierarchy for the whole tool, and the exit code each error maps to.

Core code raises these; only `a2v_cli.cli.main` turns them into a message and an exit code.
Each class also carries the non-zero API envelope `code` a server answers with.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, documented in `a2v --help` and the README."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    AUTH = 3
    NOT_FOUND = 4
    UNAVAILABLE = 5
    VIDEO_FAILED = 6
    TIMEOUT = 7
    INTERRUPTED = 130


EXIT_CODE_HELP = (
    "Exit codes: 0 ok, 1 other failure, 2 usage error or bad input, 3 authentication, "
    "4 not found (pose, avatar, video), 5 server or network unavailable, 6 video failed, "
    "7 timed out waiting, 130 interrupted."
)


class A2VError(Exception):
    """Base of every error a2v reports to the user.

    ``message`` says what is wrong; ``hint`` says what to do about it.
    """

    exit_code: ExitCode = ExitCode.FAILURE
    api_code: int = 50000
    http_status: int = 500

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class InputError(A2VError):
    """Bad arguments or input files: missing, not audio, too long, output exists..."""

    exit_code = ExitCode.USAGE
    api_code = 40000
    http_status = 400


class AuthError(A2VError):
    exit_code = ExitCode.AUTH
    api_code = 40100
    http_status = 401


class NotFoundError(A2VError):
    """An unknown pose, avatar or video id."""

    exit_code = ExitCode.NOT_FOUND
    api_code = 40400
    http_status = 404


class UnavailableError(A2VError):
    """The server or the network cannot be reached, or a device (CUDA) cannot be used."""

    exit_code = ExitCode.UNAVAILABLE
    api_code = 50300
    http_status = 503


class VideoFailedError(A2VError):
    exit_code = ExitCode.VIDEO_FAILED
    api_code = 50001
    http_status = 500


class WaitTimeoutError(A2VError):
    exit_code = ExitCode.TIMEOUT
    api_code = 50400
    http_status = 504


def not_found(kind: str, value: str, known: list[str]) -> NotFoundError:
    """A NotFoundError that suggests the closest known ids."""
    import difflib

    close = difflib.get_close_matches(value, known, n=3, cutoff=0.5)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    elif known:
        hint = f"known {kind}s: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''}"
    else:
        hint = None
    return NotFoundError(f"unknown {kind} {value!r}", hint)
