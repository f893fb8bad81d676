"""HTTP client for any server that speaks the A2V API: envelopes, typed errors, retries, downloads.

Retries (exponential backoff with jitter, honouring Retry-After) cover connection errors, 408, 429
and 5xx, for reads and for writes that carry an Idempotency-Key. The bearer token is sent only to
the configured server's origin, never to another host (e.g. a signed download URL elsewhere).
"""

from __future__ import annotations

import email.utils
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from a2v_cli import __version__
from a2v_cli.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    not_a2v_server,
    status_error,
)

API_PREFIX = "/v1/a2v"
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 3
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
DOWNLOAD_CHUNK = 1 << 16


def retry_delay(attempt: int, retry_after: str | None, now: float | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based).

    ``Retry-After`` (seconds or an HTTP date) wins when present, capped at MAX_RETRY_AFTER;
    otherwise exponential backoff from INITIAL_RETRY_DELAY, capped at MAX_RETRY_DELAY, with up to
    25% jitter subtracted so many clients don't retry in lockstep.
    """
    if retry_after:
        seconds: float | None
        try:
            seconds = float(retry_after)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(retry_after).timestamp()
                seconds = when - (time.time() if now is None else now)
            except (TypeError, ValueError):
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

    def close(self) -> None:
        self._http.close()

    def _auth(self, url: str) -> dict[str, str]:
        if self._token and same_origin(url, self.base_url):
            return {"Authorization": f"Bearer {self._token}"}
        return {}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call an API operation and return the envelope's `data` (raises a typed APIError)."""
        return self.request_envelope(method, path, **kwargs)["data"]

    def request_envelope(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        files: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """The whole envelope, for callers that read extension fields such as `next_cursor`."""
        url = f"{self.base_url}{API_PREFIX}/{path}"
        headers = self._auth(url)
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        retryable = method == "GET" or idempotency_key is not None
        attempt = 0
        while True:
            try:
                if files:
                    for f in files.values():  # rewind uploads before a retry
                        if hasattr(f[1], "seek"):
                            f[1].seek(0)
                resp = self._http.request(method, url, params=params, json=json, files=files, headers=headers)
            except httpx.TimeoutException as err:
                error: APIError = APITimeoutError(f"{method} {path} timed out", "raise --http-timeout or try again")
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
                if resp.status_code not in RETRY_STATUSES:
                    raise error
            if not retryable or attempt >= self.max_retries:
                raise error from cause
            self._sleep(retry_delay(attempt, retry_after))
            attempt += 1

    def _envelope(self, resp: httpx.Response, path: str) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            raise not_a2v_server(self.base_url, resp.status_code) from None
        if not isinstance(body, dict) or "code" not in body:
            raise not_a2v_server(self.base_url, resp.status_code)
        if body.get("code") != 0:
            raise status_error(
                resp.status_code, _int(body.get("code")), _message(body, path), resp.headers.get("X-Request-Id")
            )
        return body

    def _status_error(self, resp: httpx.Response, path: str) -> APIStatusError:
        code, message = None, f"{path}: HTTP {resp.status_code}"
        body = None
        try:
            body = resp.json()
            if isinstance(body, dict):
                code, message = _int(body.get("code")), _message(body, path, message)
        except ValueError:
            pass
        if _foreign(resp.status_code, body) and path != "download":
            return not_a2v_server(self.base_url, resp.status_code)
        return status_error(resp.status_code, code, message, resp.headers.get("X-Request-Id"))

    def download(self, url: str, dest: Path, progress: Callable[[int, int | None], None] | None = None) -> Path:
        """Fetch ``url`` into ``dest`` via ``.dest.part``, resuming with Range after a broken transfer."""
        part = dest.with_name(f".{dest.name}.part")
        attempt = 0
        while True:
            have = part.stat().st_size if part.exists() else 0
            headers = {**self._auth(url), **({"Range": f"bytes={have}-"} if have else {})}
            try:
                with self._http.stream("GET", url, headers=headers, follow_redirects=True) as resp:
                    if resp.status_code == 416 and have:  # already complete
                        break
                    if resp.status_code >= 400:
                        resp.read()
                        raise self._status_error(resp, "download")
                    if have and resp.status_code != 206:  # server ignored Range: start over
                        have = 0
                    total = _total_size(resp, have)
                    with open(part, "ab" if have else "wb") as out:
                        for chunk in resp.iter_bytes(DOWNLOAD_CHUNK):
                            out.write(chunk)
                            have += len(chunk)
                            if progress:
                                progress(have, total)
                    if total is None or have >= total:
                        break
                    raise httpx.RemoteProtocolError("transfer ended early")
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
        part.replace(dest)
        return dest


def _total_size(resp: httpx.Response, have: int) -> int | None:
    if resp.status_code == 206:
        rng = resp.headers.get("Content-Range", "")
        if "/" in rng and rng.rsplit("/", 1)[1].isdigit():
            return int(rng.rsplit("/", 1)[1])
    length = resp.headers.get("Content-Length")
    return int(length) + (have if resp.status_code == 206 else 0) if length and length.isdigit() else None


def _foreign(status: int, body: Any) -> bool:
    """A 400/404/405 without an A2V envelope: this URL is some other web server, not an A2V API."""
    return status in (400, 404, 405) and not (isinstance(body, dict) and "code" in body)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _message(body: dict[str, Any], path: str, default: str | None = None) -> str:
    msg = body.get("message")
    return f"{path}: {msg}" if isinstance(msg, str) and msg else (default or f"{path}: error code {body.get('code')}")


def new_idempotency_key() -> str:
    return f"a2v-{uuid.uuid4()}"
