"""The server's settings, importable without FastAPI (the CLI builds them from its options)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

WILDCARD_HOSTS = ("", "0.0.0.0", "::")


@dataclass
class ServerSettings:
    """How `a2v serve` runs. Every field has a safe default: loopback only, one worker, 24 h links."""

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path | None = None  # default: a2v_cli.config.home_dir() / "server"
    workers: int = 1  # render worker threads; 0 = accept jobs only (another process renders them)
    tokens_file: Path | None = None
    allow_private_urls: bool = False  # let audio_url reach loopback/private addresses (on-premise, tests)
    public_url: str | None = None  # base for absolute URLs; default derived from --host and the bound port
    max_upload_bytes: int = 50 * 1024 * 1024  # uploads and downloaded audio_url files
    max_audio_seconds: float = 600.0
    url_lifetime_s: int = 24 * 3600  # signed result links
    shutdown_grace_s: float = 30.0  # how long a running job may take to finish on shutdown before it is requeued
    device: str = "auto"  # where the lip-sync model runs: auto, cpu or cuda
    download_timeout_s: float = 60.0  # one audio_url download, all of it (connect, headers, body, redirects)
    body_timeout_s: float = 30.0  # a request body must arrive within this, renewed per 64 KiB received
    avatar_timeout_s: float | None = None  # one avatar.create, all of it; None: 60 s for a photo, 300 s for a clip

    def __post_init__(self) -> None:
        from a2v_cli.errors import InputError

        if not 0 <= self.port <= 65535:
            raise InputError(f"port {self.port} is out of range", "use 1-65535")
        if self.workers < 0:
            raise InputError("workers must be 0 or more")
        if (self.max_upload_bytes < 1 or self.max_audio_seconds <= 0 or self.url_lifetime_s < 1
                or not self.download_timeout_s > 0 or not self.body_timeout_s > 0
                or (self.avatar_timeout_s is not None and not self.avatar_timeout_s > 0)):
            raise InputError("size, duration, time and lifetime limits must be positive")
        if self.public_url is not None and not self.public_url.lower().startswith(("http://", "https://")):
            raise InputError(f"public URL {self.public_url!r} must start with http:// or https://")
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)
        if self.tokens_file is not None:
            self.tokens_file = Path(self.tokens_file)

    def public_base(self, port: int | None = None) -> str:
        """The one base of every absolute URL the server hands out, fixed at startup.

        ``--public-url`` when given; else ``http://HOST:PORT`` from ``--host`` and the port actually
        bound (``port``, for ``--port 0``), with a wildcard host (0.0.0.0, ::) named by this machine's
        host name. Never the request's Host header: a client could choose it.
        """
        if self.public_url:
            return self.public_url.rstrip("/")
        host = socket.gethostname() if self.host in WILDCARD_HOSTS else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port if port is None else port}"
