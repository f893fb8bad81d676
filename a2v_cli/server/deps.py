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
    return await token_owner(state, credentials.credentials if credentials is not None else None)


async def token_owner(state: ServerState, token: str | None) -> str:
    """The name of ``token``'s owner; AuthError (401) when there is none or it is unknown."""
    if not token:
        raise AuthError("missing bearer token", "send Authorization: Bearer <token>")
    name = state.tokens.owner(token)  # in memory: no wait
    if name is None:  # not known here yet (a token just added elsewhere): ask the source, off the event loop
        name = await run_in_threadpool(state.tokens.lookup, token)
    if name is None:
        raise AuthError("invalid token")
    return name


async def upload_gate(request_headers: list[tuple[bytes, bytes]], state: ServerState) -> None:
    """An upload's token, checked before its body is read (`BodyLimit`): without a valid one the client gets its 401
    at once, and never gets the server to receive and spool up to the upload cap first."""
    scheme, _, token = dict(request_headers).get(b"authorization", b"").decode("latin-1").partition(" ")
    await token_owner(state, token.strip() if scheme.lower() == "bearer" else None)
