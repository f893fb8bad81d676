"""The server's settings, importable without FastAPI (the CLI builds them from its options)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

WILDCARD_HOSTS = ("", "0.0.0.0", "::")
DISTRIBUTED = (("broker", "--broker", "A2V_BROKER"), ("database", "--database", "A2V_DATABASE"),
               ("storage", "--storage", "A2V_STORAGE"))
DEFAULT_QUEUE = "a2v"
LOG_FORMATS = ("text", "json")


def check_distributed(values: dict[str, str | None]) -> bool:
    """True when every one of broker, database, storage is given, False when none is; InputError (exit 2)
    naming what is missing when only some are (one check for `a2v serve` and `a2v worker`)."""
    given = [flag for key, flag, _ in DISTRIBUTED if values.get(key)]
    if not given:
        return False
    missing = [f"{flag} ({env})" for key, flag, env in DISTRIBUTED if not values.get(key)]
    if missing:
        from a2v_cli.errors import InputError

        raise InputError(f"{' and '.join(given)} given without {' and '.join(missing)}",
                         "give all three of --broker, --database and --storage, or none for the embedded server")
    return True


def check_common(max_tries: int, claim_timeout_s: float, queue: str, log_format: str) -> None:
    from a2v_cli.errors import InputError

    if max_tries < 1:
        raise InputError("--max-tries must be 1 or more")
    if not claim_timeout_s > 0:
        raise InputError("--claim-timeout must be positive")
    if not queue or len(queue) > 100 or not all(c.isalnum() or c in "-_.:" for c in queue):
        raise InputError(f"queue name {queue!r} must be 1-100 letters, digits or - _ . :")
    if log_format not in LOG_FORMATS:
        raise InputError(f"--log-format must be one of {', '.join(LOG_FORMATS)}")


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
    body_deadline_s: float = 600.0  # and all of it within this (50 MiB at 1 Mbit/s takes 420 s)
    avatar_timeout_s: float | None = None  # one avatar.create, all of it; None: 60 s for a photo, 300 s for a clip
    # the distributed deployment (all three, or none: the embedded one); see docs/deploy.md
    broker: str | None = None  # a Celery broker URL, e.g. redis://host:6379/0
    database: str | None = None  # postgresql://user@host:port/db
    storage: str | None = None  # a directory every front end and worker mounts, or s3://bucket/prefix
    queue: str = DEFAULT_QUEUE  # the Celery queue jobs go to (GPU and CPU workers may serve different ones)
    claim_timeout_s: float = 300.0  # a job queued longer than this without a worker shows as "unclaimed"
    max_tries: int = 3  # a job whose render was cut short this many times fails instead of looping
    log_format: str = "text"  # or "json": one JSON object per line, with job ids

    def __post_init__(self) -> None:
        from a2v_cli.errors import InputError

        if not 0 <= self.port <= 65535:
            raise InputError(f"port {self.port} is out of range", "use 1-65535")
        if self.workers < 0:
            raise InputError("workers must be 0 or more")
        if (self.max_upload_bytes < 1 or self.max_audio_seconds <= 0 or self.url_lifetime_s < 1
                or not self.download_timeout_s > 0 or not self.body_timeout_s > 0
                or not self.body_deadline_s > 0
                or (self.avatar_timeout_s is not None and not self.avatar_timeout_s > 0)):
            raise InputError("size, duration, time and lifetime limits must be positive")
        if self.public_url is not None and not self.public_url.lower().startswith(("http://", "https://")):
            raise InputError(f"public URL {self.public_url!r} must start with http:// or https://")
        check_common(self.max_tries, self.claim_timeout_s, self.queue, self.log_format)
        check_distributed({"broker": self.broker, "database": self.database, "storage": self.storage})
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)
        for option, folder in (("--data-dir", self.data_dir), ("--storage", self.storage)):
            if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
                raise InputError(f"{option} {folder} is not a directory", "give a directory (a new one is created)")
        if self.tokens_file is not None:
            self.tokens_file = Path(self.tokens_file)

    @property
    def distributed(self) -> bool:
        """Front end only: jobs go to Celery, state to PostgreSQL, files to the shared storage."""
        return bool(self.broker and self.database and self.storage)

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
