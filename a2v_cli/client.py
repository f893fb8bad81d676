"""HTTP client for any server that speaks the A2V API: envelopes, typed errors, retries, downloads.

Retries (exponential backoff with jitter, honouring Retry-After) cover connection errors, 408, 429
and 5xx, for reads and for writes that carry an Idempotency-Key. The bearer token is sent only to
the configured server's origin, never to another host (e.g. a signed download URL elsewhere).

The timeout bounds each request as a whole, not each read: a server that sends a byte a second
cannot keep a request alive (`http_deadline`). A download resumes only what the server proves to be the
same file (ETag + If-Range, same size) and ends with exactly the announced number of bytes.
"""

from __future__ import annotations

import contextlib
import email.utils
import json as jsonlib
import os
import random
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from a2v_cli import __version__, http_deadline
from a2v_cli.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    InputError,
    not_a2v_server,
    status_error,
)
from a2v_cli.wire import ascii_int

API_PREFIX = "/v1/a2v"
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 3
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DOWNLOAD_CHUNK = 1 << 16
CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,18})-([0-9]{1,18})/([0-9]{1,18})")


def retry_delay(attempt: int, retry_after: str | None, now: float | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    ``Retry-After`` (seconds or an HTTP date) wins when present, capped at MAX_RETRY_AFTER;
    otherwise exponential backoff from INITIAL_RETRY_DELAY, capped at MAX_RETRY_DELAY, with up to
    25% jitter subtracted so many clients don't retry in lockstep.
    """
    if retry_after:
        seconds: float | None = ascii_int(retry_after.strip())  # delta-seconds: ASCII digits only
        if seconds is None:
            try:
                when = email.utils.parsedate_to_datetime(retry_after).timestamp()
                seconds = when - (time.time() if now is None else now)
            except (TypeError, ValueError, OverflowError):
                seconds = None
        if seconds is not None and seconds >= 0:
            return min(seconds, MAX_RETRY_AFTER)
    delay = min(INITIAL_RETRY_DELAY * (2**attempt), MAX_RETRY_DELAY)
    return delay * (1 - 0.25 * random.random())


def same_origin(a: str, b: str) -> bool:
    x, y = urlsplit(a), urlsplit(b)
    port = {"http": 80, "https": 443}
    return (x.scheme, x.hostname, x.port or port.get(x.scheme)) == (y.scheme, y.hostname, y.port or port.get(y.scheme))


class A2VClient:
    """One server, one token. ``transport`` and ``sleep`` are injectable for tests."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.max_retries = max_retries
        self._sleep = sleep
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, DEFAULT_CONNECT_TIMEOUT)),
            transport=transport,
            headers={"User-Agent": f"a2v/{__version__}"},
            follow_redirects=False,
        )
        self.timeout = timeout
        http_deadline.install(self._http)

    def _deadline(self, work_s: float = 0.0) -> contextlib.AbstractContextManager[Any]:
        """Everything inside (connect, send, headers, body) shares one --http-timeout budget, plus
        ``work_s`` for an operation the server does while the request waits (its own deadline)."""
        return http_deadline.budget(self.timeout + work_s)

    def close(self) -> None:
        self._http.close()

    def _auth(self, url: str) -> dict[str, str]:
        if self._token and same_origin(url, self.base_url):
            return {"Authorization": f"Bearer {self._token}"}
        return {}

    def request(self, method: str, path: str, expect: type | None = None, **kwargs: Any) -> Any:
        """Call an API operation and return the envelope's `data` (raises a typed APIError).

        With ``expect`` (dict, or list: a list of objects), `data` of another shape is an APIStatusError
        that names the operation, not a crash further on.
        """
        data = self.request_envelope(method, path, **kwargs)["data"]
        if expect is not None and not (
            isinstance(data, expect) and (expect is not list or all(isinstance(x, dict) for x in data))
        ):
            what = "a list of objects" if expect is list else "an object"
            raise APIStatusError(f"{path}: the server answered success without {what} in data (got {_shape(data)})")
        return data

    def request_envelope(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        work_s: float = 0.0,
    ) -> dict[str, Any]:
        """The whole envelope, for callers that read extension fields such as `next_cursor`.

        ``work_s``: how long the server may work before it answers (e.g. building an avatar), on top
        of --http-timeout.
        """
        url = f"{self.base_url}{API_PREFIX}/{path}"
        headers = self._auth(url)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        retryable = method == "GET" or idempotency_key is not None
        attempt = 0
        waited = 0.0  # on answers that say when to come back (Retry-After) while the server works on it
        while True:
            try:
                if files:
                    for f in files.values():  # rewind uploads before a retry
                        if hasattr(f[1], "seek"):
                            f[1].seek(0)
                with self._deadline(work_s):
                    resp = self._http.request(method, url, params=params, json=json, files=files, data=data,
                                              headers=headers)
            except httpx.TimeoutException as err:
                error: APIError = APITimeoutError(
                    f"{method} {path} got no complete answer within {self.timeout + work_s:g} s",
                    "raise --http-timeout or try again",
                )
                cause: BaseException = err
                retry_after = None
            except httpx.TransportError as err:
                error = APIConnectionError(
                    f"cannot reach the server at {self.base_url}: {err.__class__.__name__}",
                    "check --server / A2V_SERVER and that the server is running",
                )
                cause, retry_after = err, None
            else:
                if resp.status_code < 400:
                    return self._envelope(resp, path)
                error = self._status_error(resp, path)
                cause, retry_after = error, resp.headers.get("Retry-After")
                # a 409 with Retry-After: the first request with this Idempotency-Key is still at work
                if resp.status_code not in RETRY_STATUSES and not (resp.status_code == 409 and retry_after):
                    raise error
            if not retryable:
                raise error from cause
            delay = retry_delay(attempt, retry_after)
            if retry_after and work_s:
                # busy with other work of this caller (another avatar build): it clears within the work's own
                # deadline, so wait for it that long rather than give up after max_retries
                if waited + delay > work_s:
                    raise error from cause
                waited += delay
                self._sleep(delay)
                continue
            if attempt >= self.max_retries:
                raise error from cause
            self._sleep(delay)
            attempt += 1

    def _envelope(self, resp: httpx.Response, path: str) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            raise not_a2v_server(self.base_url, resp.status_code) from None
        if not isinstance(body, dict) or "code" not in body:
            raise not_a2v_server(self.base_url, resp.status_code)
        if body.get("code") != 0:
            code = _int(body.get("code"))
            message, hint = _message(body, path, resp.status_code)
            raise status_error(resp.status_code, code, message, resp.headers.get("X-Request-Id"), hint)
        return body

    def _status_error(self, resp: httpx.Response, path: str) -> APIStatusError:
        code, message, hint = None, f"{path}: HTTP {resp.status_code}", None
        body = None
        try:
            body = resp.json()
            if isinstance(body, dict):
                code = _int(body.get("code"))
                message, hint = _message(body, path, resp.status_code, message)
        except ValueError:
            pass
        if _foreign(resp.status_code, body) and path != "download":
            return not_a2v_server(self.base_url, resp.status_code)
        return status_error(resp.status_code, code, message, resp.headers.get("X-Request-Id"), hint)

    def download(
        self, url: str, dest: Path, progress: Callable[[int, int | None], None] | None = None, force: bool = False
    ) -> Path:
        """Fetch ``url`` into ``dest`` via ``.dest.part``; after a broken transfer, resume only the same file.

        The finished part is placed with `files.place_new`: exclusively unless ``force``, so a file that
        appeared meanwhile is never replaced.

        Next to the part, ``.dest.part.json`` keeps the file's strong ETag, size and URL path. A
        resume asks ``Range`` + ``If-Range: <ETag>`` and appends only to a 206 for exactly that file
        and offset; anything else (no validator, another file, 200, 416) starts over. The result must
        have exactly the announced size, or the download fails: never a spliced or short file.
        """
        part = dest.with_name(f".{dest.name}.part")
        meta = dest.with_name(f".{dest.name}.part.json")
        lock = _lock_part(part, dest)
        try:
            return self._download(url, dest, part, meta, lock, progress, force)
        finally:
            _unlock_part(lock, part)

    def _download(self, url: str, dest: Path, part: Path, meta: Path, lock: int,
                  progress: Callable[[int, int | None], None] | None, force: bool) -> Path:
        where = _url_path(url)
        attempt = 0
        while True:
            have, etag, total = _resumable(part, meta, where)
            headers = self._auth(url)
            if have:
                headers.update({"Range": f"bytes={have}-", "If-Range": etag or ""})
            try:
                with self._deadline(), self._http.stream("GET", url, headers=headers, follow_redirects=True) as resp:
                    if resp.status_code == 416 and have:  # our offset is past the end: another file
                        os.ftruncate(lock, 0)  # the locked file itself: a new one at `part` would not be ours
                        meta.unlink(missing_ok=True)
                        continue  # start over (without Range, so this cannot repeat)
                    if resp.status_code >= 400:
                        resp.read()
                        raise self._status_error(resp, "download")
                    same = bool(have) and resp.status_code == 206 and _continues(resp, have, etag, total)
                    if not same:
                        if resp.status_code != 200:  # a range we did not ask for, or not of our file
                            _discard(part, meta)
                            raise httpx.RemoteProtocolError(f"unexpected HTTP {resp.status_code} for the whole file")
                        have, total = 0, _announced(resp)
                        etag = resp.headers.get("ETag")
                        _write_meta(meta, where, etag, total)
                    with open(part, "ab" if same else "wb") as out:
                        for chunk in resp.iter_bytes(DOWNLOAD_CHUNK):
                            have += len(chunk)
                            if total is not None and have > total:
                                _discard(part, meta)
                                raise APIConnectionError(
                                    f"download of {dest.name} failed: the server sent more than the {total} bytes "
                                    "it announced", "run the command again"
                                )
                            out.write(chunk)
                            if progress:
                                progress(have, total)
                    if total is not None and have < total:
                        raise httpx.RemoteProtocolError(f"transfer ended after {have} of {total} bytes")
                    break
            except (httpx.TransportError, APIStatusError) as err:
                status = getattr(err, "status_code", None)
                if (status is not None and status not in RETRY_STATUSES) or attempt >= self.max_retries:
                    if isinstance(err, APIError):
                        raise
                    raise APIConnectionError(
                        f"download of {dest.name} failed: {err}", "run the command again to resume"
                    ) from err
                self._sleep(retry_delay(attempt, None))
                attempt += 1
        from a2v_cli.files import place_new

        meta.unlink(missing_ok=True)
        return place_new(part, dest, force)


def _url_path(url: str) -> str:
    """The URL without its query: a signed link changes its signature, not the file it names."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _resumable(part: Path, meta: Path, where: str) -> tuple[int, str | None, int | None]:
    """(bytes on disk, ETag, size) of a part download that may be resumed, else (0, None, None)."""
    try:
        info = jsonlib.loads(meta.read_text(encoding="utf-8"))
        have = part.stat().st_size
    except (OSError, ValueError):
        return 0, None, None
    if not isinstance(info, dict):
        return 0, None, None
    etag, total = info.get("etag"), info.get("total")
    if info.get("url") != where or not isinstance(etag, str) or etag.startswith("W/") or not etag:
        return 0, None, None
    if not isinstance(total, int) or isinstance(total, bool) or not 0 < have < total:
        return 0, None, None
    return have, etag, total


def _continues(resp: httpx.Response, have: int, etag: str | None, total: int | None) -> bool:
    """Whether a 206 answer is the rest of the very file the part holds, from exactly ``have``."""
    m = CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
    return (
        m is not None and int(m.group(1)) == have and int(m.group(2)) + 1 == total and int(m.group(3)) == total
        and resp.headers.get("ETag") == etag
    )


def _announced(resp: httpx.Response) -> int | None:
    """The size of a full (200) answer, from a strictly parsed Content-Length; None when not given."""
    length = resp.headers.get("Content-Length")
    if length is None:
        return None
    size = ascii_int(length.strip())
    if size is None:
        raise httpx.RemoteProtocolError(f"invalid Content-Length {length[:40]!r}")
    return size


def _write_meta(meta: Path, where: str, etag: str | None, total: int | None) -> None:
    """Remember what the part download is, so only that file is ever resumed into it."""
    if etag and not etag.startswith("W/") and total:
        meta.write_text(jsonlib.dumps({"url": where, "etag": etag, "total": total}), encoding="utf-8")
    else:
        meta.unlink(missing_ok=True)


def _lock_part(part: Path, dest: Path) -> int:
    """Open ``part`` (creating it) and hold an exclusive lock on it for the whole download.

    Why: every download of ``dest`` uses the same part file (so a broken one can resume). Two at once (two
    `generate -o same.mp4`, two `video download` into one folder) would write into one file, and the
    first to finish would place a mixture of both videos, with exit 0. The second now stops at once.
    """
    fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks (documented)
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InputError(f"another a2v is downloading {dest} right now",
                         "wait for it to finish, or choose another output name") from None
    return fd


def _unlock_part(fd: int, part: Path) -> None:
    """Release the lock; an empty part that is still ours (nothing arrived) goes, so a failure leaves nothing."""
    try:
        mine = os.fstat(fd)
        if mine.st_size == 0:
            there = os.stat(part)
            if (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
                part.unlink()
    except OSError:
        pass
    finally:
        os.close(fd)


def _discard(part: Path, meta: Path) -> None:
    part.unlink(missing_ok=True)
    meta.unlink(missing_ok=True)


def _foreign(status: int, body: Any) -> bool:
    """A 400/404/405 without an A2V envelope: this URL is some other web server, not an A2V API."""
    return status in (400, 404, 405) and not (isinstance(body, dict) and "code" in body)


def _int(value: Any) -> int | None:
    """An envelope's integer `code`; anything else (a string, a float, true) is no code."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _shape(value: Any) -> str:
    return "null" if value is None else type(value).__name__


USER_INPUT_STATUSES = (400, 404, 409, 413, 415, 422)  # the server's answer is about what the user gave


def _message(body: dict[str, Any], path: str, status: int, default: str | None = None) -> tuple[str, str | None]:
    """The error as local mode says it: the server's message and its hint apart (an A2V server puts the hint
    in `hint` and at the end of `message`, for clients that know only the spec's fields). About the user's own
    input (bad file, unknown id) the message stands alone, as in local mode; otherwise it names the operation."""
    msg, hint = body.get("message"), body.get("hint")
    hint = hint if isinstance(hint, str) and hint else None
    if not isinstance(msg, str) or not msg:
        return default or f"{path}: error code {body.get('code')}", hint
    if hint and msg.endswith(f"; {hint}"):
        msg = msg[: -len(hint) - 2]
    key = status if status >= 400 else (_int(body.get("code")) or 0) // 100  # HTTP 200 with an error code
    return (msg if key in USER_INPUT_STATUSES else f"{path}: {msg}"), hint


def new_idempotency_key() -> str:
    return f"a2v-{uuid.uuid4()}"
