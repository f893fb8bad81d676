"""Run the app on uvicorn: bind, log, serve until a signal, shut down gracefully."""

from __future__ import annotations

import copy
import logging
import socket

from a2v_cli.errors import UnavailableError
from a2v_cli.server.settings import WILDCARD_HOSTS, ServerSettings

log = logging.getLogger("a2v.server")

HTTP_SHUTDOWN_S = 10  # open requests get this long to complete after a signal


def log_config(log_format: str = "text") -> dict:
    """uvicorn's logging plus ours on stderr; the access log keeps only ids and limits of query strings.

    ``json``: every line (ours, uvicorn's, the access log) is a JSON object (see `logs`)."""
    from uvicorn.config import LOGGING_CONFIG

    from a2v_cli.server.logs import formatter_config

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["filters"] = {"redact": {"()": "a2v_cli.server.security.RedactQuery"}}
    cfg["handlers"]["access"]["filters"] = ["redact"]
    if log_format == "json":
        cfg["formatters"] = {"default": formatter_config("json"), "access": formatter_config("json")}
        cfg["loggers"]["a2v"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    else:
        cfg["formatters"]["a2v"] = formatter_config("text")
        cfg["handlers"]["a2v"] = {"formatter": "a2v", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
        cfg["loggers"]["a2v"] = {"handlers": ["a2v"], "level": "INFO", "propagate": False}
    return cfg


def bind(host: str, port: int) -> socket.socket:
    """A bound socket, so a taken port is an UnavailableError here rather than an exit deep in uvicorn."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise UnavailableError(f"cannot listen on {host}: {err}", "check --host") from None
    family, kind, proto, _, addr = infos[0]
    # proto must say TCP: asyncio turns Nagle off (TCP_NODELAY) only on sockets that do, and without that
    # a response written in two parts waits ~40 ms for the client's delayed ACK
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as err:
        sock.close()
        raise UnavailableError(f"cannot listen on {host}:{port}: {err.strerror}", "choose another --port") from None
    sock.set_inheritable(True)
    return sock


def serve(settings: ServerSettings) -> None:
    import logging.config

    import uvicorn

    from a2v_cli.server.app import create_app

    cfg = log_config(settings.log_format)
    logging.config.dictConfig(cfg)
    if not settings.distributed:  # a front end renders nothing; its workers check their own device
        from a2v_cli.engine.lipsync import check_device

        check_device(settings.device)
    # the port first: a server that cannot listen must not have made a data dir, tokens or a key (nor
    # migrated a database) on its way to failing
    sock = bind(settings.host, settings.port)
    try:
        app = create_app(settings)
        state = app.state.a2v
        state.lock()  # a second server on the same data dir fails here, with a clear message
    except BaseException:
        sock.close()
        raise
    config = uvicorn.Config(
        app,
        log_config=cfg,
        lifespan="on",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=HTTP_SHUTDOWN_S,
    )
    server = uvicorn.Server(config)
    port = sock.getsockname()[1]
    state.public_base = settings.public_base(port)  # --port 0: the port the system chose
    where = (f"front end, storage {state.blobs.describe()}, queue {settings.queue}" if settings.distributed
             else f"data dir {state.data_dir}, {settings.workers} worker(s)")
    log.info(
        "a2v server on http://%s:%d, %s%s; links point at %s", settings.host, port, where,
        ", private audio_url targets allowed" if settings.allow_private_urls else "", state.public_base,
    )
    if settings.public_url is None and settings.host in WILDCARD_HOSTS:
        log.warning("listening on every address: give --public-url with the URL clients use, if not %s",
                    state.public_base)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        state.unlock()
    if not server.started:
        raise UnavailableError("the server could not start", "see the log above")
