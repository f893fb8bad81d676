"""One time limit on a whole HTTP request made with httpx, however the bytes arrive.

httpx's timeouts bound each read: a server that sends a byte a second keeps a request alive forever.
`install()` puts a network backend under an httpx client's connection pools whose every read and write
waits at most for what the current `budget()` has left, so connect, send, headers and body together end
by the limit. A transfer that keeps moving (PROGRESS_BYTES per limit) gets a fresh limit, so a big
upload or download is bounded by its progress, not by its size.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx

PROGRESS_BYTES = 1 << 16


class Budget:
    """The time one request has left: ``seconds`` from its start, renewed each time PROGRESS_BYTES
    more have moved (so an upload or a download may take as long as it keeps moving)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self._moved = 0

    def limit(self, timeout: float | None, error: type[Exception]) -> float:
        """``timeout`` cut to the time left; ``error`` once none is left."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise error(f"no answer within {self.seconds:g} s")
        return left if timeout is None else min(timeout, left)

    def moved(self, n: int) -> None:
        self._moved += n
        if self._moved >= PROGRESS_BYTES:
            self._moved = 0
            self.at = time.monotonic() + self.seconds


_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("a2v_http_budget", default=None)


def _limit(timeout: float | None, error: type[Exception]) -> float | None:
    budget = _BUDGET.get()
    return timeout if budget is None else budget.limit(timeout, error)


class _BudgetStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most for what the current request has left."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, _limit(timeout, httpcore.ReadTimeout))
        budget = _BUDGET.get()
        if budget is not None:
            budget.moved(len(data))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        budget = _BUDGET.get()
        for start in range(0, len(buffer), PROGRESS_BYTES):  # each piece gets only the time left
            piece = buffer[start : start + PROGRESS_BYTES]
            self._inner.write(piece, _limit(timeout, httpcore.WriteTimeout))
            if budget is not None:
                budget.moved(len(piece))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        timeout = _limit(timeout, httpcore.ConnectTimeout)
        return _BudgetStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _BudgetBackend(httpcore.NetworkBackend):
    """httpcore's network backend with every connection wrapped in a `_BudgetStream`."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        timeout = _limit(timeout, httpcore.ConnectTimeout)
        return _BudgetStream(self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        timeout = _limit(timeout, httpcore.ConnectTimeout)
        return _BudgetStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def install(http: httpx.Client) -> None:
    """Put `_BudgetBackend` under the client's connection pools (direct and proxied).

    httpx has no public hook for a whole-request deadline; its pools are httpcore ConnectionPools
    whose network backend is the one place that sees every read and write. An injected test
    transport has no pool and is left alone.
    """
    for transport in (http._transport, *http._mounts.values()):
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, _BudgetBackend):
            pool._network_backend = _BudgetBackend(backend)  # type: ignore[union-attr]


@contextlib.contextmanager
def budget(seconds: float) -> Iterator[Budget]:
    """Every request made inside, on an `install`ed client, shares ``seconds`` (renewed by progress)."""
    current = Budget(seconds)
    token = _BUDGET.set(current)
    try:
        yield current
    finally:
        _BUDGET.reset(token)
