"""A hostile HTTP host on 127.0.0.1 for tests: drips bytes, lies about Content-Length, closes early.

Each connection is answered by a script (a function of the socket and the request head); everything
stops when the host is closed or its lifetime ends, so no test can hang on it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

Script = Callable[["Conn"], None]


class Conn:
    """One accepted connection: the request's first line and headers, and a way to answer."""

    def __init__(self, sock: socket.socket, head: bytes, stop: threading.Event) -> None:
        self.sock = sock
        self.head = head
        self.stop = stop
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        self.method, self.target = [*line.split(" "), "", ""][:2]
        self.path = self.target.split("?", 1)[0]
        self.headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (h.decode("latin-1").partition(":") for h in head.split(b"\r\n")[1:] if h)
        }

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def drip(self, data: bytes, every: float) -> None:
        """Send ``data`` one byte at a time, ``every`` seconds apart, until done or stopped."""
        for i in range(len(data)):
            if self.stop.wait(every) or not self.send(data[i : i + 1]):
                return


class HostileHost:
    def __init__(self, script: Script, lifetime: float = 120.0) -> None:
        self.script = script
        self.stop = threading.Event()
        self.requests: list[Conn] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Timer(lifetime, self.close).start()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self._socks.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                data = sock.recv(4096)
                if not data:
                    return
                head += data
            conn = Conn(sock, head.split(b"\r\n\r\n", 1)[0], self.stop)
            self.requests.append(conn)
            self.script(conn)
        except OSError:
            pass
        finally:
            sock.close()

    def close(self) -> None:
        self.stop.set()
        try:
            self.listener.close()
        except OSError:
            pass
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> HostileHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def response(status: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


def drip_headers(every: float = 0.5) -> Script:
    """A status line, then a header that never ends, a byte at a time."""

    def script(c: Conn) -> None:
        c.send(b"HTTP/1.1 200 OK\r\n")
        c.drip(b"X-Slow: " + b"a" * 100_000, every)

    return script


def drip_chunked_body(every: float = 0.5) -> Script:
    """Headers at once, then a chunked body of one-byte chunks, one every ``every`` seconds."""

    def script(c: Conn) -> None:
        c.send(response("200 OK", {"Content-Type": "audio/wav", "Transfer-Encoding": "chunked"}))
        c.send(b"4\r\nRIFF\r\n")
        while not c.stop.wait(every):
            if not c.send(b"1\r\n\0\r\n"):
                return

    return script


def short_body(body: bytes, announce: int | str, send: int) -> Script:
    """Announce ``announce`` as Content-Length, send the first ``send`` bytes of ``body``, close."""

    def script(c: Conn) -> None:
        c.send(response("200 OK", {"Content-Type": "audio/wav", "Content-Length": str(announce),
                                   "Connection": "close"}, body[:send]))

    return script
