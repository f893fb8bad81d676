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
    TERMINATED = 143


EXIT_CODE_HELP = (
    "Exit codes: 0 ok, 1 other failure, 2 usage error or bad input, 3 authentication, "
    "4 not found (pose, avatar, video), 5 server or network unavailable, 6 video failed, "
    "7 timed out waiting, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."
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


class APIError(A2VError):
    """An error talking to an A2V server; mirrors the transport's tree (connection -> timeout, status)."""

    def __init__(
        self, message: str, hint: str | None = None, *, status_code: int | None = None,
        api_code: int | None = None, request_id: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.status_code = status_code
        if api_code is not None:
            self.api_code = api_code
        self.request_id = request_id


class APIConnectionError(APIError, UnavailableError):
    """The server could not be reached (DNS, refused, reset, TLS)."""


class APITimeoutError(APIConnectionError):
    """A request took longer than --http-timeout."""


class APIStatusError(APIError):
    """The server answered with an error status or a non-zero envelope code."""


class NotA2VServerError(APIStatusError, UnavailableError):
    """The URL answers HTTP, but not with A2V envelopes: a wrong --server / A2V_SERVER (exit 5)."""


def not_a2v_server(base_url: str, status: int | None) -> NotA2VServerError:
    return NotA2VServerError(
        f"not an A2V server at {base_url}", "check --server / A2V_SERVER (the URL without /v1/a2v)", status_code=status
    )


class APIBadRequestError(APIStatusError, InputError):
    pass


class APIAuthError(APIStatusError, AuthError):
    pass


class APINotFoundError(APIStatusError, NotFoundError):
    pass


class APIServerError(APIStatusError, UnavailableError):
    pass


def status_error(status: int, api_code: int | None, message: str, request_id: str | None = None,
                 hint: str | None = None) -> APIStatusError:
    """The APIStatusError subclass for an HTTP status (or, on HTTP 200, the envelope code)."""
    key = status if status >= 400 else (api_code or 0) // 100
    if key in (401, 403):
        cls: type[APIStatusError] = APIAuthError
    elif key == 404:
        cls = APINotFoundError
    elif key in (400, 409, 413, 415, 422):
        cls = APIBadRequestError
    elif key >= 500 or key in (408, 429):
        cls = APIServerError
    else:
        cls = APIStatusError
    hint = hint or {
        APIAuthError: "check A2V_TOKEN or run `a2v auth login`",
        APIServerError: "the server is unavailable; try again later",
    }.get(cls)
    return cls(message, hint, status_code=status, api_code=api_code, request_id=request_id)
