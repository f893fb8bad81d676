"""`a2v serve tokens add|list|revoke`: the distributed deployment's bearer tokens, in its PostgreSQL.

Why commands and not a file: every front end reads the tokens table (server/pg_tokens.py), so a token
added or revoked here holds on all of them without a restart. A new token is printed once, on stdout,
and never taken from the command line (argv shows in `ps` and in shell history); the table keeps only
its hash. The embedded `a2v serve` keeps its tokens file (docs/server.md).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

tokens_app = typer.Typer(
    help="Tokens of the distributed deployment, kept in its database (docs/deploy.md).", no_args_is_help=True
)

DatabaseOpt = Annotated[str | None, typer.Option(
    "--database", envvar="A2V_DATABASE",
    help="The deployment's PostgreSQL, as for `a2v serve --database` (a password belongs in A2V_DATABASE).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks.", envvar="A2V_DEBUG")]
COLUMNS = [("name", "NAME"), ("created_at", "CREATED"), ("revoked_at", "REVOKED")]


def _table(ctx: typer.Context, database: str | None) -> Any:
    """The tokens table of ``database`` (or `a2v serve --database` before the subcommand), migrated."""
    from a2v_cli.errors import InputError

    url = database or (ctx.obj or {}).get("database")
    if not url:
        raise InputError("no database given", "give --database URL or set A2V_DATABASE (the front ends' setting)")
    from a2v_cli.server.pg_store import PgStore
    from a2v_cli.server.pg_tokens import TokenTable

    store = PgStore(url, max_connections=1)
    ctx.call_on_close(store.close)
    store.migrate()
    return TokenTable(store)


def _output(json_mode: bool) -> Any:
    from a2v_cli.output import Output

    return Output(json_mode=json_mode)


@tokens_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token's name: the tenant that owns what it creates.")],
    database: DatabaseOpt = None,
    json_: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Make a new token for NAME and print it once on stdout (only its hash is stored)."""
    import secrets

    from a2v_cli.server.pg_tokens import check_name

    check_name(name)
    table = _table(ctx, database)
    token = secrets.token_urlsafe(32)
    row = table.add(name, token)
    out = _output(json_)
    if json_:
        out.json({"name": name, "token": token, "created_at": row["created_at"]})
        return
    print(token, flush=True)
    out.info(f"Token {name!r} added; this is the only time it is shown: give it to its user now (as A2V_TOKEN).")


@tokens_app.command("list")
def list_(ctx: typer.Context, database: DatabaseOpt = None, json_: JsonOpt = False, debug: DebugOpt = False) -> None:
    """Every token's name, when it was created and revoked (never a token)."""
    rows = _table(ctx, database).rows()
    out = _output(json_)
    if json_:
        out.json(rows)
    else:
        out.table(rows, COLUMNS)


@tokens_app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The name whose active token stops working.")],
    database: DatabaseOpt = None,
    json_: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Revoke NAME's token: every front end refuses it within a second or two. Its videos and avatars stay."""
    from a2v_cli.server.pg_tokens import REFRESH_S

    row = _table(ctx, database).revoke(name)
    out = _output(json_)
    if json_:
        out.json(row)
    else:
        out.info(f"Token {name!r} revoked; front ends refuse it within {REFRESH_S + 1:g} s.")
