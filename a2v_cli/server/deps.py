"""The FastAPI dependencies every router shares: the app's `ServerState` and the caller's token name.

Why dependencies and not closures: a router module builds its routes without the app's local variables,
so each route reads the state of the app serving the request (``app.state.a2v``, set by `create_app`).
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from a2v_cli.errors import AuthError
from a2v_cli.server.app import ServerState

bearer = HTTPBearer(auto_error=False, description="A token from --tokens-file, A2V_SERVER_TOKENS or "
                    "`a2v serve tokens add` (distributed).")


def get_state(request: Request) -> ServerState:
    """The state `create_app` opened for the app serving this request."""
    return request.app.state.a2v


async def owner(
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer), state: ServerState = Depends(get_state)
) -> str:
    """The name of the caller's token; AuthError (401) without a valid one."""
    if credentials is None or not credentials.credentials:
        raise AuthError("missing bearer token", "send Authorization: Bearer <token>")
    name = state.tokens.owner(credentials.credentials)  # in memory: no wait
    if name is None:  # not known here yet (a token just added elsewhere): ask the source, off the event loop
        name = await run_in_threadpool(state.tokens.lookup, credentials.credentials)
    if name is None:
        raise AuthError("invalid token")
    return name
