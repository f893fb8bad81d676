"""The distributed deployment's `AvatarIndex`: tenants' avatars as rows in PostgreSQL.

Why rows: every front end lists and checks a tenant's avatars from the same table at once, and the
table's primary key (owner, avatar_id) decides between two creates of one id on two front ends. The row
is inserted, the bundle renamed into place in the tenant's folder of the storage (`Blobs.avatars_home`)
and stored (`Blobs.avatars_changed`: with a bucket, uploaded, its manifest last), and only then committed:
a second create of the id waits on the first's uncommitted row and then fails with "exists", and no
reader sees a row whose bundle is not complete in the storage. A front end killed between storing and
the commit leaves a bundle with no row: invisible, and removed (from the folder and the bucket) by the
next create of that id, which holds the row then. A delete removes the row and the files (and the
bucket's copy) in one transaction, so a create of the id waits for both.

Idempotency keys are rows of `avatar_keys` (migration 0003): claimed when a create starts, set to the
avatar in the transaction that commits it, deleted with the avatar (a foreign key), so any front end
answers a retry: the avatar, "still being created" while the claim holds, or a new build.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

from a2v_cli.server.avatar_index import AvatarRecord, KeyClaim, exists_error, key_busy_error, place_or_exists
from a2v_cli.server.blobs import Blobs
from a2v_cli.server.pg_store import PgStore
from a2v_cli.server.tenants import tenant_key

_COLUMNS = "avatar_id, name, description, kind, pose_ids"


def _record(row: tuple) -> AvatarRecord:
    return AvatarRecord(row[0], row[1], row[2], row[3], tuple(row[4]))


class PgAvatars:
    def __init__(self, store: PgStore, blobs: Blobs) -> None:
        self.store = store
        self.blobs = blobs

    def list(self, owner: str) -> list[AvatarRecord]:
        with self.store.transaction() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM avatars WHERE owner = %s ORDER BY avatar_id",
                                (owner,)).fetchall()
        return [_record(r) for r in rows]

    def claim_key(self, owner: str, claim: KeyClaim, lease_s: float) -> str | None:
        for _ in range(3):  # a row deleted between the insert and the read (its avatar went): once more
            with self.store.transaction() as conn:
                if conn.execute(
                    "INSERT INTO avatar_keys (owner, idempotency_key, claim_id, claimed_until) "
                    "VALUES (%s, %s, %s, now() + make_interval(secs => %s)) ON CONFLICT DO NOTHING RETURNING 1",
                    (owner, claim.key, claim.claim_id, lease_s),
                ).fetchone():
                    return None
                row = conn.execute(
                    "SELECT avatar_id, claim_id, claimed_until > now() FROM avatar_keys "
                    "WHERE owner = %s AND idempotency_key = %s FOR UPDATE", (owner, claim.key),
                ).fetchone()
                if row is None:
                    continue
                avatar_id, holder, live = row
                if avatar_id is not None:
                    return str(avatar_id)
                if live and holder != claim.claim_id:
                    raise key_busy_error()
                conn.execute(  # its holder died (or failed without letting go): this request takes it over
                    "UPDATE avatar_keys SET claim_id = %s, claimed_until = now() + make_interval(secs => %s) "
                    "WHERE owner = %s AND idempotency_key = %s", (claim.claim_id, lease_s, owner, claim.key))
                return None
        raise key_busy_error()

    def release_key(self, owner: str, claim: KeyClaim) -> None:
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM avatar_keys WHERE owner = %s AND idempotency_key = %s AND claim_id = %s "
                         "AND avatar_id IS NULL", (owner, claim.key, claim.claim_id))

    def add(self, owner: str, record: AvatarRecord, place: Callable[[], bool], claim: KeyClaim | None = None) -> None:
        tenant = tenant_key(owner)
        with self.store.transaction() as conn:
            inserted = conn.execute(
                "INSERT INTO avatars (owner, avatar_id, name, description, kind, pose_ids) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (owner, record.avatar_id, record.name, record.description, record.kind, list(record.pose_ids)),
            ).fetchone()
            if inserted is None:
                raise exists_error(record.avatar_id)
            # no row, yet a bundle: a front end died between storing it and the commit; it goes (the local
            # folder, then whatever of it the storage holds) before this one is placed and stored
            dest = self.blobs.avatars_local(tenant) / "avatars" / record.avatar_id  # the caller brought it up to date
            if dest.exists():
                trash = dest.with_name(f".orphan.{record.avatar_id}.{os.getpid()}")
                os.rename(dest, trash)
                shutil.rmtree(trash, ignore_errors=True)
            self.blobs.avatars_changed(tenant, record.avatar_id)
            place_or_exists(place, record.avatar_id)  # raising rolls the row back
            self.blobs.avatars_changed(tenant, record.avatar_id)  # stored before the row is visible
            if claim is not None:
                conn.execute("UPDATE avatar_keys SET avatar_id = %s, claim_id = NULL, claimed_until = NULL "
                             "WHERE owner = %s AND idempotency_key = %s AND claim_id = %s",
                             (record.avatar_id, owner, claim.key, claim.claim_id))

    def remove(self, owner: str, avatar_id: str, discard: Callable[[], None]) -> AvatarRecord | None:
        with self.store.transaction() as conn:
            row = conn.execute(f"DELETE FROM avatars WHERE owner = %s AND avatar_id = %s RETURNING {_COLUMNS}",
                               (owner, avatar_id)).fetchone()
            if row is not None:  # the deleted row stays locked until commit: a create of this id waits
                discard()
                self.blobs.avatars_changed(tenant_key(owner), avatar_id)
        return _record(row) if row else None
