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
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

from a2v_cli.server.avatar_index import AvatarRecord, exists_error, place_or_exists
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

    def add(self, owner: str, record: AvatarRecord, place: Callable[[], None]) -> None:
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
            dest = self.blobs.avatars_home(tenant) / "avatars" / record.avatar_id
            if dest.exists():
                trash = dest.with_name(f".orphan.{record.avatar_id}.{os.getpid()}")
                os.rename(dest, trash)
                shutil.rmtree(trash, ignore_errors=True)
            self.blobs.avatars_changed(tenant, record.avatar_id)
            place_or_exists(place, record.avatar_id)  # raising rolls the row back
            self.blobs.avatars_changed(tenant, record.avatar_id)  # stored before the row is visible

    def remove(self, owner: str, avatar_id: str, discard: Callable[[], None]) -> AvatarRecord | None:
        with self.store.transaction() as conn:
            row = conn.execute(f"DELETE FROM avatars WHERE owner = %s AND avatar_id = %s RETURNING {_COLUMNS}",
                               (owner, avatar_id)).fetchone()
            if row is not None:  # the deleted row stays locked until commit: a create of this id waits
                discard()
                self.blobs.avatars_changed(tenant_key(owner), avatar_id)
        return _record(row) if row else None
