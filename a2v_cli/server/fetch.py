"""Download a client's `audio_url` without letting it reach this server's own network (SSRF).

`audio_url` is hostile input. Every hop (the URL and each redirect, at most five) is checked the
same way: http or https only, no credentials, the host resolved here and every address it resolves
to refused unless it is a public unicast address. The connection then goes to the address that was
checked, not to a second DNS answer (no DNS rebinding), while the request still carries the
original Host header and, for https, the original name for SNI and certificate checks. Size is
capped, and so is the time of the whole download (`Deadline`), not of each read. The standard
library's `http.client` is used on purpose: it never reads proxy settings from the environment,
which would send the request somewhere unchecked.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from a2v_cli import __version__
from a2v_cli.errors import InputError
from a2v_cli.wire import ascii_int

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

CONNECT_TIMEOUT_S = 5.0
TOTAL_TIMEOUT_S = 60.0
MAX_REDIRECTS = 5
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
CHUNK = 1 << 16

# Cloud metadata services, refused by name even where a range check would already catch them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.123",  # AWS time sync
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
        "fd00:ec2::254",  # AWS over IPv6
    )
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Abandoned(Exception):
    """Raised inside a job when the server stops before the job could finish; the job goes back to pending."""


class FetchRefused(InputError):
    """The URL, or an address it leads to, is not allowed."""


class FetchFailed(InputError):
    """The download itself went wrong: unreachable, HTTP error, too big, too slow."""


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one download.

    ``allow_private`` lifts the address check entirely (on-premise use, tests). ``allow_private_hosts``
    lifts it for the named hosts only, as an allow-list. ``resolver`` maps (host, port) to addresses;
    it is replaceable so tests can point a name at a local server.
    """

    max_bytes: int
    allow_private: bool = False
    allow_private_hosts: frozenset[str] = frozenset()
    connect_timeout: float = CONNECT_TIMEOUT_S
    total_timeout: float = TOTAL_TIMEOUT_S
    max_redirects: int = MAX_REDIRECTS
    resolver: Resolver | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)


def human_size(n: int) -> str:
    """50 MiB, 1.5 KiB or 1000000 bytes: exact, so a limit reads as configured, in the docs' binary units."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size and (n * 10) % size == 0:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (IPv4 and IPv6), in the order the system prefers."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise FetchRefused(f"audio_url refused: cannot resolve host {host!r} ({err})") from err
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        if addr not in out:
            out.append(addr)
    return out


def address_refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` must not be fetched from (e.g. "a private address"), or None for a public address.

    IPv4 addresses hidden in IPv6 ones (mapped ``::ffff:a.b.c.d``, NAT64, 6to4, Teredo) are checked as
    the IPv4 address they reach.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip.teredo:
            embedded = ip.teredo[1]
        if embedded is None and ip in NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_refusal(embedded)
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect and what to ask for."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def check_url(url: str, policy: FetchPolicy, resolve: bool = True) -> Target:
    """Refuse a URL that must not be fetched; with ``resolve``, resolve and check its addresses too.

    Raises FetchRefused with a message that says why, e.g.
    "audio_url refused: 10.0.0.1 is a private address".
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise FetchRefused(f"audio_url refused: {url!r} is not a valid URL ({err})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"not {scheme}://" if scheme else f"and {url[:80]!r} is not a URL"
        raise FetchRefused(f"audio_url refused: only http and https URLs are allowed, {shown}")
    host = parts.hostname
    if not host:
        raise FetchRefused(f"audio_url refused: {url!r} has no host")
    try:  # internationalised names go on the wire (DNS, Host, SNI) in their ASCII form
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise FetchRefused(f"audio_url refused: {host!r} is not a valid host name") from None
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("audio_url refused: URLs with credentials (user:password@) are not allowed")
    if any(c in url for c in "\r\n\t "):
        raise FetchRefused("audio_url refused: the URL contains whitespace or control characters")
    port = port or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if not path.isascii():
        path = quote(path, safe="/?&=%:@!$'()*+,;~-._")
    addresses: tuple[str, ...] = ()
    if resolve:
        addresses = tuple(_checked_addresses(host, port, policy))
    return Target(url, scheme, host, port, path, addresses)


def _checked_addresses(host: str, port: int, policy: FetchPolicy) -> list[str]:
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    exempt = policy.allow_private or host in policy.allow_private_hosts
    if literal is not None and not exempt:
        # refuse literal addresses before any lookup, so the message names the address as written
        reason = address_refusal(literal)
        if reason:
            raise FetchRefused(f"audio_url refused: {host} is {reason}")
    addresses = _resolve(policy.resolver or system_resolver, host, port, policy.connect_timeout)
    if not addresses:
        raise FetchRefused(f"audio_url refused: host {host!r} has no address")
    if not exempt:
        for addr in addresses:
            reason = address_refusal(ipaddress.ip_address(addr))
            if reason:
                shown = addr if addr == host else f"{host} resolves to {addr}, which"
                raise FetchRefused(f"audio_url refused: {shown} is {reason}")
    return addresses


class Deadline:
    """One time limit on a whole download, enforced however the bytes arrive.

    Socket timeouts bound a single read, so a host that drips a byte a second keeps every read
    alive; here a timer shuts down the download's sockets when the limit passes (or at once on
    ``cancel()``, for a server that is stopping), which ends any read in progress. The code around
    the reads also checks ``remaining()`` between them.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self.cancelled = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._trip, kwargs={"expired": True})
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        """Seconds left; FetchFailed (or Abandoned after ``cancel``) once there are none."""
        left = self.at - time.monotonic()
        if self.cancelled:
            raise Abandoned
        if left <= 0 or self.expired:
            raise self.error()
        return left

    def error(self) -> FetchFailed:
        return FetchFailed(f"could not download audio_url: it took longer than the limit of {self.seconds:g} s")

    def check(self, err: BaseException | None = None) -> None:
        """Raise the deadline's own error when it is why ``err`` happened (a socket shut down under a read)."""
        if self.cancelled:
            raise Abandoned from err
        if self.expired or time.monotonic() >= self.at:
            raise self.error() from err

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            done = self.expired or self.cancelled
        if done:
            _shutdown(sock)

    def cancel(self) -> None:
        self._trip(expired=False)

    def close(self) -> None:
        self._timer.cancel()

    def _trip(self, expired: bool) -> None:
        with self._lock:
            if expired:
                self.expired = True
            else:
                self.cancelled = True
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a recv() blocked in another thread, unlike close()
    except OSError:
        pass


def _connect(address: str, port: int, timeout: float, deadline: Deadline) -> socket.socket:
    sock = socket.create_connection((address, port), timeout)
    deadline.watch(sock)
    return sock


def _resolve(resolver: Resolver, host: str, port: int, timeout: float) -> list[str]:
    """``resolver(host, port)``, given up after ``timeout`` s.

    getaddrinfo cannot be interrupted, and a name server the client controls can answer slowly; the
    lookup runs in a thread of its own, so neither an API thread (video.generate) nor a download slot
    waits longer than ``timeout`` for it (the thread ends when the system resolver gives up).
    """
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["addresses"] = resolver(host, port)
        except BaseException as err:  # handed to the caller below
            box["error"] = err

    thread = threading.Thread(target=run, name="a2v-resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise FetchRefused(f"audio_url refused: resolving host {host!r} took longer than {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["addresses"]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a fixed, already checked address; Host still names the original host.

    ``raw_sock`` stays reachable after http.client hands the socket to the response, so each read's
    timeout can shrink with the time left.
    """

    raw_sock: socket.socket | None = None

    def __init__(self, host: str, port: int, address: str, timeout: float, deadline: Deadline) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address
        self._deadline = deadline

    def connect(self) -> None:
        self.sock = self.raw_sock = _connect(self._address, self.port, self.timeout, self._deadline)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a fixed address; SNI and the certificate check use the original host name."""

    raw_sock: socket.socket | None = None

    def __init__(
        self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext, deadline: Deadline
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._ctx = context
        self._deadline = deadline

    def connect(self) -> None:
        sock = _connect(self._address, self.port, self.timeout, self._deadline)
        self.sock = self.raw_sock = self._ctx.wrap_socket(sock, server_hostname=self.host)


def fetch(
    url: str,
    dest: Path,
    policy: FetchPolicy,
    should_stop: Callable[[], bool] | None = None,
    deadline: Deadline | None = None,
) -> Path:
    """Download ``url`` into ``dest`` under ``policy``; FetchRefused / FetchFailed say why not.

    The whole download (every redirect hop: connect, TLS, headers, body) ends by ``policy.total_timeout``
    (or the given ``deadline``, which the caller may ``cancel()``); ``should_stop`` is polled between
    chunks so a shutting-down server can abandon the download. A body shorter than its Content-Length
    is an error, never a file.
    """
    own = deadline is None
    deadline = deadline or Deadline(policy.total_timeout)
    try:
        current = url
        for hop in range(policy.max_redirects + 1):
            target = check_url(current, policy)
            if hop:
                _check_redirect_hop(url, target)
            conn, resp = _open(target, policy, deadline)
            try:
                if resp.status in REDIRECT_STATUSES:
                    location = resp.getheader("Location")
                    if not location:
                        raise FetchFailed(f"could not download audio_url: HTTP {resp.status} without a Location")
                    current = urljoin(current, location.strip())
                    continue
                if resp.status != 200:
                    raise FetchFailed(f"could not download audio_url: HTTP {resp.status} {resp.reason}".rstrip())
                _save(resp, getattr(conn, "raw_sock", None), dest, policy, deadline, should_stop)
                return dest
            finally:
                conn.close()
        raise FetchFailed(f"could not download audio_url: more than {policy.max_redirects} redirects")
    finally:
        if own:
            deadline.close()


def _check_redirect_hop(origin: str, target: Target) -> None:
    """A redirect may not downgrade https to http (the download would lose its integrity)."""
    if urlsplit(origin).scheme.lower() == "https" and target.scheme == "http":
        raise FetchRefused(f"audio_url refused: redirect from https to plain http ({target.url})")


def _open(
    target: Target, policy: FetchPolicy, deadline: Deadline
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Connect to the first checked address that answers and send the GET."""
    errors: list[str] = []
    for address in target.addresses:
        timeout = min(policy.connect_timeout, deadline.remaining())
        conn: http.client.HTTPConnection
        if target.scheme == "https":
            ctx = policy.ssl_context or ssl.create_default_context()
            conn = _PinnedHTTPSConnection(target.host, target.port, address, timeout, ctx, deadline)
        else:
            conn = _PinnedHTTPConnection(target.host, target.port, address, timeout, deadline)
        try:
            conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(deadline.remaining())
            conn.request(
                "GET",
                target.path,
                headers={
                    "User-Agent": f"a2v-server/{__version__}",
                    "Accept": "audio/*, video/*;q=0.5, */*;q=0.1",
                    "Accept-Encoding": "identity",
                    "Connection": "close",
                },
            )
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException, ValueError) as err:
            conn.close()
            deadline.check(err)
            errors.append(f"{address}: {_describe(err)}")
    raise FetchFailed(f"could not download audio_url: {'; '.join(errors) or 'no address to connect to'}")


def _describe(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "timed out"
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected ({err.verify_message})"
    return f"{err.__class__.__name__}: {err}" if str(err) else err.__class__.__name__


def _save(
    resp: http.client.HTTPResponse,
    sock: socket.socket | None,
    dest: Path,
    policy: FetchPolicy,
    deadline: Deadline,
    should_stop: Callable[[], bool] | None,
) -> None:
    too_big = f"audio_url refused: the file is larger than the limit of {human_size(policy.max_bytes)}"
    header = resp.getheader("Content-Length")
    chunked = "chunked" in (resp.getheader("Transfer-Encoding") or "").lower()
    length = None if chunked else ascii_int((header or "").strip()) if header is not None else None
    if header is not None and not chunked and length is None:
        raise FetchFailed(f"could not download audio_url: the server sent an invalid Content-Length ({header[:40]!r})")
    if length is not None and length > policy.max_bytes:
        raise FetchRefused(too_big)
    size = 0
    try:
        with open(dest, "wb") as out:
            for chunk in _chunks(resp, sock, deadline):
                size += len(chunk)
                if size > policy.max_bytes:
                    raise FetchRefused(too_big)
                if should_stop is not None and should_stop():
                    raise Abandoned
                out.write(chunk)
        if length is not None and size != length:
            raise FetchFailed(
                f"could not download audio_url: the connection closed after {size} of the {length} bytes announced"
            )
    except BaseException:
        dest.unlink(missing_ok=True)
        raise


def _chunks(resp: http.client.HTTPResponse, sock: socket.socket | None, deadline: Deadline) -> Iterable[bytes]:
    """The body in chunks; each read may wait only as long as the whole download has left."""
    while True:
        left = deadline.remaining()
        if sock is not None:
            sock.settimeout(left)
        try:
            chunk = resp.read1(CHUNK)
        except (OSError, http.client.HTTPException, ValueError) as err:
            deadline.check(err)
            raise FetchFailed(f"could not download audio_url: {_describe(err)}") from err
        if not chunk:
            deadline.check()  # EOF because the deadline shut the socket down, not because the body ended
            return
        yield chunk
