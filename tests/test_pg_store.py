"""The state stores against a real PostgreSQL (tests/services.py starts a throwaway one) and SQLite.

One contract for both deployments (`StateStore`: jobs, idempotency, history pages, delete, prune,
metrics counts), then what only the distributed one needs: migrations applied once under concurrency,
Idempotency-Keys unique across front ends, claims that give a job to one worker at a time, a worker
presumed dead that cannot publish, tries bounded by --max-tries, and the sweeper's requeue.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest

from a2v_cli.engine.ingest import rename_new
from a2v_cli.errors import InputError, NotFoundError
from a2v_cli.server.avatar_index import (
    AvatarExistsError,
    AvatarRecord,
    FolderAvatars,
    KeyBusyError,
    KeyClaim,
    read_record,
)
from a2v_cli.server.blobs import LocalBlobs
from a2v_cli.server.deployment import JobLimits
from a2v_cli.server.pg_avatars import PgAvatars
from a2v_cli.server.pg_store import ClaimedJob, Liveness, PgStore, migrations
from a2v_cli.server.pg_tokens import REFRESH_S, DbTokens, TokenTable
from a2v_cli.server.security import token_hash
from a2v_cli.server.tenants import tenant_avatars
from a2v_cli.store import VideoStore, iso_before

LIMITS = JobLimits(allow_private=False, max_bytes=1 << 20, download_timeout_s=30.0, max_audio_seconds=60.0)
LEASE_S = 15.0


@pytest.fixture
def pg(database: str) -> Iterator[PgStore]:
    store = PgStore(database)
    store.migrate()
    yield store
    store.close()


def sql(url: str, statement: str, *args: object) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, args or None)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def submit(store: object, owner: str = "alice", key: str | None = None, pose: str = "ava-front"):  # type: ignore[no-untyped-def]
    if isinstance(store, PgStore):
        return store.create_job(pose, owner, "a2v-upload:upl_x", key, None, LIMITS)
    return store.create_job(pose, owner, "a2v-upload:upl_x", key, None)  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    if request.param == "sqlite":
        store = VideoStore(tmp_path / "server.db")
        yield store
        store.close()
    else:
        yield request.getfixturevalue("pg")


def test_the_state_store_contract_is_the_same_in_both_deployments(any_store: object) -> None:
    s = any_store
    first, job, created = submit(s, key="k1")
    assert created and first.status == "pending" and job.video_id == first.video_id and job.attempts == 0
    again, _, created_again = submit(s, key="k1")
    assert not created_again and again.video_id == first.video_id
    bobs, _, _ = submit(s, owner="bob", key="k1")  # keys are per owner
    assert bobs.video_id != first.video_id
    ids = [first.video_id] + [submit(s)[0].video_id for _ in range(4)]
    assert s.get(first.video_id, "alice").video_id == first.video_id  # type: ignore[attr-defined]
    assert s.get(first.video_id, "bob") is None  # type: ignore[attr-defined]
    page, cursor = s.page("alice", 2)  # type: ignore[attr-defined]
    assert [v.video_id for v in page] == ids[::-1][:2] and cursor is not None
    rest, end = s.page("alice", 10, cursor)  # type: ignore[attr-defined]
    assert [v.video_id for v in rest] == ids[::-1][2:] and end is None
    assert s.delete(first.video_id, "alice") == "busy"  # type: ignore[attr-defined]
    assert s.delete(first.video_id, "bob") == "unknown"  # type: ignore[attr-defined]
    assert s.status_counts() == {"pending": 6}  # type: ignore[attr-defined]
    assert s.unclaimed(iso_before(3600)) == 0  # type: ignore[attr-defined]
    time.sleep(0.01)
    assert s.unclaimed(iso_before(0)) == 6  # type: ignore[attr-defined]
    s.ping()  # type: ignore[attr-defined]


def test_finished_videos_delete_and_prune_in_both(any_store: object) -> None:
    s = any_store
    a, _, _ = submit(s)
    b, _, _ = submit(s)
    if isinstance(s, PgStore):
        for v in (a, b):
            claimed = s.claim(v.video_id, f"c-{v.video_id}", 3, LEASE_S)
            assert isinstance(claimed, ClaimedJob)
            assert s.finish(v.video_id, claimed.claim_id, lambda: None, video_url=f"videos/{v.video_id}/video.mp4",
                            mask_video_url=f"videos/{v.video_id}/mask.mp4", frame_count=25)
    else:
        for v in (a, b):
            s.update(v.video_id, status="finished", frame_count=25)  # type: ignore[attr-defined]
    assert s.get(a.video_id, "alice").frame_count == 25  # type: ignore[attr-defined]
    assert s.delete(a.video_id, "alice") == "deleted"  # type: ignore[attr-defined]
    assert s.delete(a.video_id, "alice") == "gone"  # type: ignore[attr-defined]
    assert s.get(a.video_id, "alice") is None  # type: ignore[attr-defined]
    assert s.prune("bob", iso_before(-60)) == []  # type: ignore[attr-defined]
    assert s.prune("alice", iso_before(-60)) == [b.video_id]  # type: ignore[attr-defined]
    assert s.page("alice")[0] == []  # type: ignore[attr-defined]


# --- PostgreSQL only -------------------------------------------------------------------------------------


def test_migrations_apply_once_even_when_processes_start_together(database: str) -> None:
    assert migrations() and migrations()[0][0] == 1
    stores = [PgStore(database, max_connections=2) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            applied = list(pool.map(lambda st: st.migrate(), stores))
        assert sorted(len(a) for a in applied) == [0, 0, 0, len(migrations())], applied
        assert stores[0].migrate() == []
        assert sql(database, "SELECT version FROM a2v_migrations ORDER BY version") == [(v,) for v, _ in migrations()]
    finally:
        for st in stores:
            st.close()


def test_one_idempotency_key_is_one_job_across_front_ends(database: str, pg: PgStore) -> None:
    other = PgStore(database)  # a second front end's pool
    try:
        barrier = threading.Barrier(8)

        def race(i: int) -> tuple[str, bool]:
            barrier.wait()
            video, _, created = submit(pg if i % 2 else other, key="same-key")
            return video.video_id, created

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(race, range(8)))
        assert len({vid for vid, _ in results}) == 1, results
        assert sum(created for _, created in results) == 1, results
        assert sql(database, "SELECT COUNT(*) FROM videos") == [(1,)]
    finally:
        other.close()


def test_a_job_is_claimed_by_one_worker_at_a_time(pg: PgStore) -> None:
    video, _, _ = submit(pg)
    barrier = threading.Barrier(6)

    def claim(i: int) -> ClaimedJob | str:
        barrier.wait()
        return pg.claim(video.video_id, f"claim-{i}", 3, LEASE_S)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(claim, range(6)))
    winners = [r for r in results if isinstance(r, ClaimedJob)]
    assert len(winners) == 1 and sorted(r for r in results if isinstance(r, str)) == ["busy"] * 5, results
    won = winners[0]
    assert won.job.attempts == 1 and won.limits == LIMITS
    assert pg.get(video.video_id, "alice").status == "processing"  # type: ignore[union-attr]
    published = []
    assert pg.finish(video.video_id, won.claim_id, lambda: published.append(1), video_url="v", frame_count=3)
    assert published == [1]
    assert pg.claim(video.video_id, "late-redelivery", 3, LEASE_S) == "finished"  # a redelivered message: no-op


def test_a_worker_presumed_dead_cannot_publish_after_another_took_over(database: str, pg: PgStore,
                                                                      tmp_path: Path) -> None:
    blobs = LocalBlobs(tmp_path / "storage", None)
    video, _, _ = submit(pg)
    vid = video.video_id
    a = pg.claim(vid, "worker-a", 3, LEASE_S)
    assert isinstance(a, ClaimedJob)
    assert pg.claim(vid, "worker-b", 3, LEASE_S) == "busy"  # a's heartbeat is fresh
    sql(database, "UPDATE videos SET heartbeat_at = now() - interval '1 hour' WHERE video_id = %s", vid)
    b = pg.claim(vid, "worker-b", 3, LEASE_S)  # a went quiet: b takes over, a second try
    assert isinstance(b, ClaimedJob) and b.job.attempts == 2

    def files(tag: str) -> list[Path]:
        out = tmp_path / tag
        out.mkdir()
        for name in ("video.mp4", "mask.mp4"):
            (out / name).write_bytes(tag.encode() * 100)
        return [out / "video.mp4", out / "mask.mp4"]

    with blobs.staged(vid, files("a")) as staged_a:  # as the worker does it
        assert not pg.finish(vid, "worker-a", lambda: blobs.publish(vid, staged_a, replace=True), video_url="x")
    assert not blobs.result_dir(vid).exists()  # a published nothing
    assert not pg.fail(vid, "worker-a", "late failure") and not pg.release(vid, "worker-a")
    with blobs.staged(vid, files("b")) as staged_b:
        assert pg.finish(vid, "worker-b", lambda: blobs.publish(vid, staged_b, replace=True), video_url="y",
                         frame_count=1)
    result = blobs.result_file(vid, "video.mp4")
    assert result is not None and result.read_bytes() == b"b" * 100
    assert sorted(p.name for p in (tmp_path / "storage" / "videos").iterdir()) == [vid]  # one output set
    assert pg.get(vid, "alice").status == "finished"  # type: ignore[union-attr]
    # a second set offered without the claim is refused; with it (an orphan of a try that died between
    # its rename and its commit), the folder is replaced, never doubled
    with blobs.staged(vid, files("c")) as staged_c:
        assert blobs.publish(vid, staged_c) is False and not staged_c.exists()
    assert blobs.result_file(vid, "video.mp4").read_bytes() == b"b" * 100  # type: ignore[union-attr]
    with blobs.staged(vid, files("d")) as staged_d:
        assert blobs.publish(vid, staged_d, replace=True)
    leftover = blobs.staging(vid)  # a worker killed while copying
    assert blobs.sweep_staging(3600) == 0 and leftover.exists()  # young: maybe still being copied
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    assert blobs.sweep_staging(3600) == 1 and not leftover.exists()
    assert blobs.result_file(vid, "video.mp4").read_bytes() == b"d" * 100  # type: ignore[union-attr]
    assert sorted(p.name for p in (tmp_path / "storage" / "videos").iterdir()) == [vid]


def test_tries_are_bounded_and_the_last_reason_is_kept(pg: PgStore) -> None:
    video, _, _ = submit(pg)
    vid = video.video_id
    for n in (1, 2):
        c = pg.claim(vid, f"try-{n}", 2, LEASE_S)
        assert isinstance(c, ClaimedJob) and c.job.attempts == n
        assert pg.release(vid, c.claim_id, f"internal error: the render process died (try {n})")
        assert pg.get(vid, "alice").status == "pending"  # type: ignore[union-attr]
    assert pg.claim(vid, "try-3", 2, LEASE_S) == "failed"
    v = pg.get(vid, "alice")
    assert v is not None and v.status == "failed"
    assert v.error == "gave up after 2 tries: internal error: the render process died (try 2)"


def test_the_sweeper_requeues_jobs_of_dead_workers_and_unpublished_ones(database: str, pg: PgStore,
                                                                        tmp_path: Path) -> None:
    fresh, _, _ = submit(pg)
    assert pg.take_unpublished(60) == []  # just committed: its front end is still publishing it
    assert pg.take_unpublished(0) == [fresh.video_id]
    assert pg.take_unpublished(0) == []  # taken once
    pg.unpublish(fresh.video_id)  # the publish failed: the next sweep tries again
    assert pg.take_unpublished(0) == [fresh.video_id]

    dead, _, _ = submit(pg)
    worn, _, _ = submit(pg)
    hung, _, _ = submit(pg)
    sessions = {v.video_id: Liveness(database) for v in (dead, worn, hung)}  # a worker process each
    try:
        for v in (dead, worn, hung):
            assert sessions[v.video_id].hold(v.video_id)
            assert isinstance(pg.claim(v.video_id, f"c-{v.video_id}", 3, LEASE_S, held=True), ClaimedJob)
        sql(database, "UPDATE videos SET attempts = 3 WHERE video_id = %s", worn.video_id)
        assert pg.reap(LEASE_S, 3) == ([], [])  # every worker is alive
        sessions[dead.video_id].close()  # kill -9: the connection closes, the lock goes with it
        sessions[worn.video_id].close()
        blobs = LocalBlobs(tmp_path / "storage", None)
        left = [blobs.staging(v.video_id) for v in (dead, worn, hung)]  # half-written renders of each
        # within a sweep, not a lease: the server drops a closed session's locks when its backend exits, a
        # moment after the client hangs up, so poll for up to 5 s (the lease would be LEASE_S)
        requeued, failed = [], []
        deadline = time.monotonic() + 5
        while (len(requeued), len(failed)) != (1, 1) and time.monotonic() < deadline:
            more = pg.reap(LEASE_S, 3, blobs.discard_staging)
            requeued, failed = requeued + more[0], failed + more[1]
            time.sleep(0.02)
        assert requeued == [dead.video_id] and failed == [worn.video_id]
        assert [d.exists() for d in left] == [False, False, True]  # the live worker's staging stays
        assert pg.get(dead.video_id, "alice").status == "pending"  # type: ignore[union-attr]
        gone = pg.get(worn.video_id, "alice")
        assert gone.status == "failed" and gone.error == "gave up after 3 tries: the worker stopped during each one"  # type: ignore[union-attr]
        assert pg.take_unpublished(0) == [dead.video_id]
        # a worker alive but silent (hung, or cut off from the database) loses its job after the lease
        assert pg.reap(LEASE_S, 3) == ([], [])
        sql(database, "UPDATE videos SET heartbeat_at = now() - interval '1 minute' WHERE video_id = %s", hung.video_id)
        assert pg.reap(LEASE_S, 3) == ([hung.video_id], [])
    finally:
        for live in sessions.values():
            live.close()


def test_a_job_whose_holder_died_is_taken_over_at_once(database: str, pg: PgStore) -> None:
    video, _, _ = submit(pg)
    vid = video.video_id
    first, second = Liveness(database), Liveness(database)
    try:
        assert first.hold(vid)
        assert isinstance(pg.claim(vid, "first", 3, LEASE_S, held=True), ClaimedJob)
        assert not second.hold(vid)  # alive: a redelivered message finds it held
        first.close()  # killed: its backend drops the lock a moment after the client hangs up
        deadline = time.monotonic() + 5
        while not (held := second.hold(vid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert held
        taken = pg.claim(vid, "second", 3, LEASE_S, held=True)  # fresh heartbeat, yet its holder is gone
        assert isinstance(taken, ClaimedJob) and taken.job.attempts == 2
        second.drop(vid)  # done with it: free for anyone
        third = Liveness(database)
        assert third.hold(vid)
        third.close()
    finally:
        second.close()


def test_workers_are_counted_by_their_heartbeats(database: str, pg: PgStore) -> None:
    assert pg.workers(7) == 0
    pg.heartbeat([], "w1", "a2v", 1)
    pg.heartbeat([], "w2", "gpu", 2)
    assert pg.workers(7) == 2
    sql(database, "UPDATE workers SET seen_at = now() - interval '1 minute' WHERE name = 'w2'")
    assert pg.workers(7) == 1
    pg.worker_gone("w1")
    assert pg.workers(7) == 0


# --- tenants' avatars: the same AvatarIndex contract on the folder scan and on PostgreSQL ----------------


@pytest.fixture(params=["folder", "postgresql"])
def avatar_index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[object, Path]]:
    """(index, root): the embedded FolderAvatars, or PgAvatars, over the file root ``root``."""
    root = tmp_path / "root"
    root.mkdir()
    if request.param == "folder":
        yield FolderAvatars(root), root
    else:
        yield PgAvatars(request.getfixturevalue("pg"), LocalBlobs(root, None)), root


def built(tmp_path: Path, avatar_id: str, n: int = 0) -> Path:
    """A complete photo bundle `avatar_id`, built outside the tenant's folder (as avatar.create's child does)."""
    from photo_bundle import write_photo_bundle

    return write_photo_bundle(tmp_path / f"build-{avatar_id}-{n}", avatar_id)


def place(bundle: Path, root: Path, owner: str) -> Callable[[], bool]:
    dest = tenant_avatars(root, owner) / bundle.name
    return lambda: (dest.parent.mkdir(parents=True, exist_ok=True), rename_new(bundle, dest))[1]


def test_the_avatar_index_contract_is_the_same_in_both_deployments(avatar_index: tuple, tmp_path: Path) -> None:
    index, root = avatar_index
    assert index.list("alice") == []
    bundle = built(tmp_path, "astro")
    record = read_record(bundle)
    assert record == AvatarRecord("astro", "Astronaut", "NASA portrait (public domain)", "photo", ("astro-photo",))
    index.add("alice", record, place(bundle, root, "alice"))
    assert index.list("alice") == [record] and index.list("bob") == []
    assert (tenant_avatars(root, "alice") / "astro" / "avatar.json").is_file()
    again = built(tmp_path, "astro", 1)
    with pytest.raises(AvatarExistsError):  # the id is taken: nothing placed, the first one untouched
        index.add("alice", read_record(again), place(again, root, "alice"))
    assert again.is_dir() and index.list("alice") == [record]
    index.add("bob", read_record(again), place(again, root, "bob"))  # ids are per tenant
    assert [r.avatar_id for r in index.list("bob")] == ["astro"]
    discarded: list[str] = []
    assert index.remove("carol", "astro", lambda: discarded.append("carol")) is None
    assert index.remove("alice", "nope", lambda: discarded.append("nope")) is None and discarded == []
    assert index.remove("alice", "astro", lambda: discarded.append("astro")) == record and discarded == ["astro"]


def test_idempotency_keys_follow_the_same_contract_in_both_deployments(avatar_index: tuple, tmp_path: Path) -> None:
    """A key is held while its create builds (another request with it hears "still being created"), answers
    the avatar it made from then on, is free again after a failed create, and makes a new avatar once the
    one it made was deleted."""
    index, root = avatar_index
    first, retry = KeyClaim("k1", "first"), KeyClaim("k1", "retry")
    assert index.claim_key("alice", first, 60) is None
    with pytest.raises(KeyBusyError, match="still being created"):
        index.claim_key("alice", retry, 60)
    assert index.claim_key("bob", KeyClaim("k1", "bob's"), 60) is None  # keys are per tenant
    bundle = built(tmp_path, "astro")
    index.add("alice", read_record(bundle), place(bundle, root, "alice"), first)
    assert index.claim_key("alice", retry, 60) == "astro"
    failed = KeyClaim("k2", "failed")  # a create that failed lets its key go: the retry builds afresh
    assert index.claim_key("alice", failed, 60) is None
    index.release_key("alice", failed)
    assert index.claim_key("alice", KeyClaim("k2", "again"), 60) is None
    assert index.remove("alice", "astro", lambda: shutil.rmtree(tenant_avatars(root, "alice") / "astro"))
    remade = built(tmp_path, "astro", 1)  # the same id made again by another create: not the key's avatar
    index.add("alice", read_record(remade), place(remade, root, "alice"), KeyClaim("k3", "other"))
    assert index.claim_key("alice", KeyClaim("k1", "after"), 60) is None


def test_a_key_held_by_a_front_end_that_died_is_taken_over_after_its_lease(pg: PgStore) -> None:
    index = PgAvatars(pg, LocalBlobs(Path("/nonexistent"), None))
    assert index.claim_key("alice", KeyClaim("k", "dead"), 0.2) is None
    with pytest.raises(KeyBusyError):
        index.claim_key("alice", KeyClaim("k", "early"), 60)
    time.sleep(0.3)
    assert index.claim_key("alice", KeyClaim("k", "late"), 60) is None
    assert sql(pg.url, "SELECT claim_id, avatar_id FROM avatar_keys") == [("late", None)]


def test_one_key_claimed_on_two_front_ends_at_once_is_held_once(pg: PgStore) -> None:
    stores = [pg, PgStore(pg.url)]
    barrier = threading.Barrier(2)

    def claim(n: int) -> str:
        barrier.wait()
        try:
            return str(PgAvatars(stores[n], LocalBlobs(Path("/nonexistent"), None)).claim_key(
                "alice", KeyClaim("same", f"fe{n}"), 60))
        except KeyBusyError:
            return "busy"

    try:
        with ThreadPoolExecutor(2) as pool:
            assert sorted(pool.map(claim, range(2))) == ["None", "busy"]
    finally:
        stores[1].close()


def test_two_creates_of_one_id_at_once_give_one_avatar(pg: PgStore, tmp_path: Path) -> None:
    """Two front ends (two stores) record the same id at the same moment: one avatar, one 'exists', one folder."""
    root = tmp_path / "storage"
    stores = [pg, PgStore(pg.url)]
    bundles = [built(tmp_path, "twin", n) for n in range(2)]
    barrier = threading.Barrier(2)

    def create(n: int) -> str:
        def slow_place() -> bool:  # the rename takes a while: the other create must wait for its outcome
            time.sleep(0.5)
            return place(bundles[n], root, "alice")()

        barrier.wait()
        try:
            PgAvatars(stores[n], LocalBlobs(root, None)).add("alice", read_record(bundles[n]), slow_place)
        except AvatarExistsError as e:
            return f"exists: {e}"
        return "created"

    try:
        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(pool.map(create, range(2)))
    finally:
        stores[1].close()
    assert outcomes[0] == "created" and outcomes[1].startswith("exists: avatar 'twin' already exists"), outcomes
    assert sql(pg.url, "SELECT owner, avatar_id FROM avatars") == [("alice", "twin")]
    assert sorted(p.name for p in tenant_avatars(root, "alice").iterdir()) == ["twin"]  # no orphan, no second
    assert sum(b.is_dir() for b in bundles) == 1  # the loser's build is left to its caller to remove


def test_a_bundle_without_its_row_is_replaced_by_the_next_create(pg: PgStore, tmp_path: Path) -> None:
    """A front end killed between the rename and the commit leaves a folder with no row: never listed, and
    the next create of that id takes its place."""
    root = tmp_path / "storage"
    orphan = built(tmp_path, "astro", 0)
    place(orphan, root, "alice")()
    index = PgAvatars(pg, LocalBlobs(root, None))
    assert index.list("alice") == []
    fresh = built(tmp_path, "astro", 1)
    (fresh / "marker").write_text("new")
    index.add("alice", read_record(fresh), place(fresh, root, "alice"))
    assert (tenant_avatars(root, "alice") / "astro" / "marker").read_text() == "new"
    assert [p.name for p in tenant_avatars(root, "alice").iterdir()] == ["astro"]


def test_a_create_during_a_delete_of_the_same_id_keeps_the_new_bundle(pg: PgStore, tmp_path: Path) -> None:
    """Front end A deletes `astro` while front end B creates it again: B waits for A's delete, files
    included, so A never removes B's new bundle and B never takes A's for an orphan."""
    root = tmp_path / "storage"
    old, new = built(tmp_path, "astro", 0), built(tmp_path, "astro", 1)
    (new / "marker").write_text("new")
    index = PgAvatars(pg, LocalBlobs(root, None))
    index.add("alice", read_record(old), place(old, root, "alice"))
    folder = tenant_avatars(root, "alice") / "astro"
    deleting = threading.Event()

    def slow_discard() -> None:
        deleting.set()
        time.sleep(0.5)
        shutil.rmtree(folder)

    other = PgStore(pg.url)
    try:
        with ThreadPoolExecutor(1) as pool:
            removed = pool.submit(index.remove, "alice", "astro", slow_discard)
            assert deleting.wait(10)
            PgAvatars(other, LocalBlobs(root, None)).add("alice", read_record(new), place(new, root, "alice"))
            assert removed.result() is not None
    finally:
        other.close()
    assert (folder / "marker").read_text() == "new" and [r.avatar_id for r in index.list("alice")] == ["astro"]


# --- tokens ---------------------------------------------------------------------------------------------


def test_tokens_are_stored_as_hashes_imported_once_and_revoked(database: str, pg: PgStore) -> None:
    table = TokenTable(pg)
    tokens = {"alice": "alice-secret-token-0123456789", "bob": "bob-secret-token-0123456789"}
    others = [PgStore(database, max_connections=2) for _ in range(3)]
    try:  # four front ends starting together with the same tokens file: each token once, none fails
        with ThreadPoolExecutor(4) as pool:
            added = list(pool.map(lambda st: TokenTable(st).import_tokens(tokens, "test"), [pg, *others]))
    finally:
        for st in others:
            st.close()
    assert sorted(n for names in added for n in names) == ["alice", "bob"], added
    assert sorted((r["name"], r["revoked_at"]) for r in table.rows()) == [("alice", None), ("bob", None)]
    dump = str(sql(database, "SELECT * FROM tokens"))
    for token in tokens.values():  # neither the token nor its bytes in any column
        assert token not in dump and token.encode().hex() not in dump.replace("\\x", "")
    assert table.active() == {name: token_hash(t) for name, t in tokens.items()}
    with pytest.raises(InputError, match="already has a token"):
        table.add("alice", "another-token-for-alice-0123")
    assert table.revoke("alice")["revoked_at"] is not None
    with pytest.raises(NotFoundError):
        table.revoke("alice")
    assert table.import_tokens(tokens, "test") == []  # an old file never brings a revoked token back
    assert table.find(token_hash(tokens["alice"])) is None and table.find(token_hash(tokens["bob"])) == "bob"
    table.add("alice", "a-new-token-for-alice-0123456")  # a new token under the same name
    assert table.find(token_hash("a-new-token-for-alice-0123456")) == "alice"


def test_adding_and_revoking_a_token_answer_its_row_without_reading_the_table_again(pg: PgStore) -> None:
    """`a2v serve tokens add` read every row of the table again to print the new one's created_at; the
    insert (and the revoke's update) return the row now, in one statement each."""
    table = TokenTable(pg)
    for n in range(50):
        table.add(f"t{n}", f"token-{n}-0123456789abcdef")
    statements: list[str] = []

    class Recording:  # the store, its statements recorded
        @contextlib.contextmanager
        def transaction(self) -> Iterator[object]:
            with pg.transaction() as conn:
                yield SimpleNamespace(execute=lambda q, *a: (statements.append(str(q)), conn.execute(q, *a))[1])

    recorded = TokenTable(Recording())  # type: ignore[arg-type]
    added = recorded.add("carol", "carol-secret-token-0123456789")
    revoked = recorded.revoke("carol")
    assert [q.split()[0] for q in statements] == ["INSERT", "UPDATE"], statements
    listed = next(r for r in table.rows() if r["name"] == "carol")
    assert added == {**listed, "revoked_at": None} and added["created_at"].endswith("Z"), (added, listed)
    assert revoked == listed and revoked["revoked_at"], (revoked, listed)


def test_a_front_ends_token_cache_sees_new_tokens_at_once_and_revokes_within_its_refresh(pg: PgStore) -> None:
    table = TokenTable(pg)
    table.add("alice", "alice-secret-token-0123456789")
    front_end = DbTokens(TokenTable(pg))
    front_end.start()
    try:
        assert front_end.owner("alice-secret-token-0123456789") == "alice"
        assert front_end.owner("alice-secret-token-012345678") is None
        table.add("carol", "carol-secret-token-0123456789")  # through another front end, or the CLI
        assert front_end.owner("carol-secret-token-0123456789") is None  # not in memory yet ...
        assert front_end.lookup("carol-secret-token-0123456789") == "carol"  # ... one lookup: at once
        assert front_end.owner("carol-secret-token-0123456789") == "carol"
        revoked = time.monotonic()
        table.revoke("carol")
        while front_end.owner("carol-secret-token-0123456789") is not None:
            assert time.monotonic() - revoked < REFRESH_S + 1, "a revoked token still works"
            time.sleep(0.02)
        assert front_end.lookup("carol-secret-token-0123456789") is None
        assert front_end.owner("alice-secret-token-0123456789") == "alice"
    finally:
        front_end.stop()
