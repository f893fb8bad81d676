"""The distributed deployment's bearer tokens: a table in PostgreSQL, cached in each front end.

Why a table: tokens added or revoked with `a2v serve tokens` hold on every front end without a restart.
The table keeps each token's SHA-256 only (`security.token_hash`), never the token. A front end keeps
the active hashes in memory, refreshed every `REFRESH_S` by a thread, and compares a presented token's
hash with every one of them in constant time (`security.matching_name`); a token it does not know yet
(just added through another front end) is looked up in the table once, so it works at once everywhere.
A revoked token stops working on every front end within `REFRESH_S` (plus one query) while the
database answers; while it does not, the last known set stays in use (nothing else works then anyway).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg

from a2v_cli.errors import InputError, NotFoundError, UnavailableError
from a2v_cli.server.periodic import Periodic
from a2v_cli.server.pg_store import PgStore
from a2v_cli.server.security import matching_name, token_hash

log = logging.getLogger("a2v.server")

REFRESH_S = 1.0  # how stale a front end's copy of the active tokens may get (a revoke's delay)
TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")


def check_name(name: str) -> str:
    """A new token's name: it names the tenant in logs and commands, so letters, digits and . _ @ - only."""
    if not TOKEN_NAME.fullmatch(name):
        raise InputError(f"token name {name!r} must be 1-100 letters, digits or . _ @ - (starting with a letter "
                         "or digit)")
    return name


_ISO = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'"
_ROW = f"name, to_char(created_at AT TIME ZONE 'UTC', {_ISO}), to_char(revoked_at AT TIME ZONE 'UTC', {_ISO})"


def _row(row: tuple) -> dict[str, Any]:
    """A token's row as `a2v serve tokens list` shows it (times ISO, UTC); never a token or its hash."""
    return {"name": row[0], "created_at": row[1], "revoked_at": row[2]}


class TokenTable:
    """The tokens table's statements (the operator's commands and the front ends' cache use these)."""

    def __init__(self, store: PgStore) -> None:
        self.store = store

    def add(self, name: str, token: str) -> dict[str, Any]:
        """Store ``token`` under ``name`` and return its row (as `rows` shows it); InputError when ``name`` has an
        active token already."""
        with self.store.transaction() as conn:
            row = conn.execute("INSERT INTO tokens (name, token_hash) VALUES (%s, %s) ON CONFLICT DO NOTHING "
                               f"RETURNING {_ROW}", (name, token_hash(token))).fetchone()
        if row is None:
            raise InputError(f"token name {name!r} already has a token",
                             f"revoke it first (a2v serve tokens revoke {name}), or choose another name")
        return _row(row)

    def import_tokens(self, tokens: dict[str, str], source: str) -> list[str]:
        """Add the tokens of a file or the environment that the table lacks; the names added.

        Idempotent, and safe when front ends start together (the unique indexes decide). A token
        revoked in the table is never brought back by an old file, and a name that has another
        active token keeps it (a warning says so)."""
        added = []
        for name, token in tokens.items():
            digest = token_hash(token)
            with self.store.transaction() as conn:
                if conn.execute("INSERT INTO tokens (name, token_hash) VALUES (%s, %s) ON CONFLICT DO NOTHING "
                                "RETURNING id", (name, digest)).fetchone():
                    added.append(name)
                    continue
                known = conn.execute("SELECT name, revoked_at FROM tokens WHERE token_hash = %s",
                                     (digest,)).fetchone()
            if known is None:
                log.warning("token %r of %s is not used: the database has another token of that name "
                            "(revoke it first to replace it: a2v serve tokens revoke %s)", name, source, name)
            elif known[0] != name:
                log.warning("token %r of %s is not used: the database has it under another name", name, source)
            elif known[1] is not None:
                log.warning("token %r of %s was revoked; it stays revoked", name, source)
        if added:
            log.info("imported %d token(s) from %s into the database: %s", len(added), source, ", ".join(added))
        return added

    def rows(self) -> list[dict[str, Any]]:
        """Every token's name, created and revoked times (ISO, UTC), oldest first; never a token or hash."""
        with self.store.transaction() as conn:
            rows = conn.execute(f"SELECT {_ROW} FROM tokens ORDER BY id").fetchall()
        return [_row(r) for r in rows]

    def count(self) -> int:
        with self.store.transaction() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0])

    def revoke(self, name: str) -> dict[str, Any]:
        """Revoke the active token of ``name``; NotFoundError when it has none."""
        with self.store.transaction() as conn:
            row = conn.execute("UPDATE tokens SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL "
                               f"RETURNING {_ROW}", (name,)).fetchone()
        if row is None:
            active = sorted({r["name"] for r in self.rows() if r["revoked_at"] is None})
            raise NotFoundError(f"no active token named {name!r}",
                                f"active tokens: {', '.join(active)}" if active else "there are no active tokens")
        return _row(row)

    def active(self) -> dict[str, bytes]:
        """name -> token hash of every token not revoked."""
        with self.store.transaction() as conn:
            rows = conn.execute("SELECT name, token_hash FROM tokens WHERE revoked_at IS NULL").fetchall()
        return {n: bytes(h) for n, h in rows}

    def find(self, digest: bytes) -> str | None:
        """The name of the active token with this hash (an index lookup by hash: it reveals nothing of a token)."""
        with self.store.transaction() as conn:
            row = conn.execute("SELECT name FROM tokens WHERE token_hash = %s AND revoked_at IS NULL",
                               (digest,)).fetchone()
        return row[0] if row else None


class DbTokens:
    """The front end's `Authenticator`: the table's active tokens, cached (see the module doc)."""

    def __init__(self, table: TokenTable, refresh_s: float = REFRESH_S) -> None:
        self.table = table
        self.refresh_s = refresh_s
        self._active: dict[str, bytes] = table.active()
        self._failing = False
        self._thread = Periodic("a2v-tokens", refresh_s, self.refresh)

    def owner(self, presented: str) -> str | None:
        return matching_name(token_hash(presented), self._active)

    def lookup(self, presented: str) -> str | None:
        digest = token_hash(presented)
        name = self.table.find(digest)  # UnavailableError (503) while the database is away
        if name is not None:
            self._active = {**self._active, name: digest}
        return name

    def refresh(self) -> None:
        try:
            self._active = self.table.active()
        except (UnavailableError, psycopg.Error) as err:
            if not self._failing:
                log.warning("cannot refresh the tokens (%s); the last known ones stay in use", err)
            self._failing = True
            return
        if self._failing:
            log.info("tokens refreshed again")
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()
