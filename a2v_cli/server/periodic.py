"""A daemon thread that runs one function every few seconds until stopped (the sweeper, the token cache)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("a2v.server")


class Periodic:
    """Calls ``fn`` every ``interval_s`` on its own thread; an exception is logged and the next round runs
    (the database away for a moment must not end the thread)."""

    def __init__(self, name: str, interval_s: float, fn: Callable[[], object]) -> None:
        self.interval_s = interval_s
        self.fn = fn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.fn()
            except Exception as err:
                log.warning("%s failed: %s", self._thread.name, err)
