"""`a2v serve`: the A2V API on this machine, rendering with the bundled engine.

`create_app(settings)` builds the FastAPI app (importable, testable); `serve(settings)` runs it on
uvicorn until SIGINT/SIGTERM. FastAPI and uvicorn are imported only when one of them is called, so
`import a2v_cli.server` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from a2v_cli.server.settings import ServerSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ServerSettings", "create_app", "serve"]


def create_app(settings: ServerSettings) -> FastAPI:
    """The app; its lifespan starts the render workers and requeues jobs a crash left unfinished."""
    from a2v_cli.server.app import create_app as _create_app

    return _create_app(settings)


def serve(settings: ServerSettings) -> None:
    """Serve until SIGINT/SIGTERM, then stop taking work, let running jobs finish (or requeue them), return.

    Raises UnavailableError when the address or the data dir is taken. After a signal, uvicorn
    re-raises it once the shutdown is complete (KeyboardInterrupt for Ctrl-C), as a CLI expects.
    """
    from a2v_cli.server.run import serve as _serve

    _serve(settings)
