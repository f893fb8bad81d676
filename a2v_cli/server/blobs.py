"""Where result files and uploads live, behind one small interface (`Blobs`) with two implementations.

Why one interface: the routes, the avatar code and the workers read and write files through it and
never ask which deployment runs. `LocalBlobs` is a directory: the embedded server's data dir, or one
that every host of the distributed deployment mounts (``--storage DIR``); `s3_blobs.S3Blobs` is a
bucket of S3-compatible object storage (``--storage s3://bucket/prefix``). Both lay files out the same
way (``videos/<id>/``, ``uploads/<id>``, ``avatars/<tenant>/``), under names made only of server-made ids.

Results are rendered into a private staging folder on local disk and then published whole: a reader
sees no result or a complete one, and two workers that rendered the same job (one of them presumed
dead) cannot leave two output sets. Here publishing is a rename of the whole folder (the second rename
finds the folder there); in a bucket it is a small manifest object written last (see `s3_blobs`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from a2v_cli.server.security import UrlSigner, load_signing_key

API = "/v1/a2v"
RESULT_FILES = ("video.mp4", "mask.mp4", "alpha.webm", "alpha.mov")


class Blobs(Protocol):
    """Result files, uploads and tenants' avatar bundles, wherever they are kept.

    A location (`result_location`, `upload_location`) is a local file to serve, or a short-lived URL
    to redirect the client to (a presigned object URL)."""

    signer: UrlSigner | None  # None in a worker: it signs no links

    def describe(self) -> str:
        """Where the files are, for the log (never a credential)."""
        ...

    def problem(self) -> str | None:
        """Why the storage cannot be used now (readiness), or None."""
        ...

    def signing_key(self) -> bytes:
        """The URL-signing secret every front end on this storage shares (made by the first)."""
        ...

    # results
    def staged(self, video_id: str, files: Iterable[Path] = ()) -> AbstractContextManager[Path]: ...

    def prepare(self, video_id: str, staged: Path) -> None:
        """Make the staged files durable where readers will find them once published (before `publish`,
        outside the database transaction that publishes)."""
        ...

    def publish(self, video_id: str, staged: Path, replace: bool = False) -> bool: ...

    def discard_staging(self, video_id: str) -> int: ...

    def sweep_staging(self, older_than_s: float) -> int: ...

    def delete_results(self, video_id: str) -> None: ...

    def result_location(self, video_id: str, name: str, head: bool = False) -> Path | str | None: ...

    def url(self, base: str, video_id: str, name: str) -> str: ...

    # uploads
    def uploads_dir(self) -> Path:
        """A local folder where a new upload is written and checked before `put_upload`."""
        ...

    def put_upload(self, upload_id: str, tmp: Path) -> None:
        """Move the checked file ``tmp`` into the storage as ``upload_id``."""
        ...

    def upload_location(self, upload_id: str) -> Path | str | None: ...

    def fetch_upload(self, upload_id: str, work: Path) -> Path | None:
        """The upload as a local file (fetched into ``work`` when the storage is remote), or None."""
        ...

    # tenants' avatar bundles
    def avatars_home(self, tenant: str) -> Path:
        """The local folder of the tenant's bundles (``avatars/<tenant>/``), current with the storage."""
        ...

    def avatars_local(self, tenant: str) -> Path:
        """The same folder as it is, without asking the storage (for a caller that just brought it up to date)."""
        ...

    def avatars_changed(self, tenant: str, avatar_id: str) -> None:
        """The tenant's bundle ``avatar_id`` was built or removed in the local folder: make the storage match."""
        ...


def signed_url(signer: UrlSigner | None, base: str, video_id: str, name: str) -> str:
    """A signed, expiring link to a result file (served by any front end: no token needed)."""
    assert signer is not None, "a worker's storage signs no links"
    expires, sig = signer.sign(video_id, name)
    return f"{base}{API}/files/{video_id}/{name}?expires={expires}&signature={sig}"


@contextlib.contextmanager
def staged_folder(folder: Path, files: Iterable[Path] = ()) -> Iterator[Path]:
    """The new folder ``folder`` holding copies of ``files``; removed however the block ends."""
    try:
        for f in files:
            shutil.copyfile(f, folder / f.name)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class LocalBlobs:
    """Result files and uploads under ``root``; links to them are signed, expiring front-end URLs."""

    def __init__(self, root: Path, signer: UrlSigner | None, uploads: Path | None = None) -> None:
        self.root = root
        self.signer = signer
        self._uploads = uploads or root / "uploads"

    def describe(self) -> str:
        return str(self.root)

    def problem(self) -> str | None:
        return None

    def signing_key(self) -> bytes:
        return load_signing_key(self.root)

    # --- results ---------------------------------------------------------------------------------

    def result_dir(self, video_id: str) -> Path:
        return self.root / "videos" / video_id

    def result_file(self, video_id: str, name: str) -> Path | None:
        """The finished file ``name`` of ``video_id``, or None."""
        path = self.result_dir(video_id) / name
        return path if name in RESULT_FILES and path.is_file() else None

    def staging(self, video_id: str) -> Path:
        """A new private folder beside the results, to copy one attempt's files into before publishing."""
        path = self.root / "videos" / f".{video_id}.{uuid.uuid4().hex[:12]}.part"
        path.mkdir(parents=True, mode=0o700)
        return path

    def staged(self, video_id: str, files: Iterable[Path] = ()) -> AbstractContextManager[Path]:
        """A new staging folder (holding copies of ``files``), for a render to write into; whatever is not
        published from it by the end of the block is removed, however the block ends."""
        return staged_folder(self.staging(video_id), files)

    def prepare(self, video_id: str, staged: Path) -> None:
        """Nothing to move: the staging folder is beside the results already (`publish` syncs it)."""

    def publish(self, video_id: str, staged: Path, replace: bool = False) -> bool:
        """Rename ``staged`` to the result folder; False (and ``staged`` removed) if one is there already.

        ``replace``: the caller holds the job (its claim, under the database's row lock), so a folder
        already there is an orphan of a try that died between renaming and recording: it goes first.
        """
        for f in staged.iterdir():  # on disk before the rename makes them visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        final = self.result_dir(video_id)
        try:
            os.rename(staged, final)
            return True
        except OSError:  # ENOTEMPTY/EEXIST: another try published first
            if not replace:
                shutil.rmtree(staged, ignore_errors=True)
                return False
        shutil.rmtree(final, ignore_errors=True)
        os.rename(staged, final)
        return True

    def discard_staging(self, video_id: str) -> int:
        """Remove every staging folder of ``video_id``: only for whoever holds the job (its earlier tries'
        holders are gone, so what they left is garbage). Returns how many went."""
        removed = 0
        for entry in (self.root / "videos").glob(f".{video_id}.*.part"):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        return removed

    def sweep_staging(self, older_than_s: float) -> int:
        """Remove staging folders older than ``older_than_s`` (a worker killed while copying); how many."""
        import time

        videos = self.root / "videos"
        if not videos.is_dir():
            return 0
        removed = 0
        for entry in videos.glob(".vid_*.part"):
            try:
                if time.time() - entry.stat().st_mtime > older_than_s:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
            except OSError:
                continue
        return removed

    def delete_results(self, video_id: str) -> None:
        shutil.rmtree(self.result_dir(video_id), ignore_errors=True)

    def result_location(self, video_id: str, name: str, head: bool = False) -> Path | None:
        return self.result_file(video_id, name)

    def url(self, base: str, video_id: str, name: str) -> str:
        return signed_url(self.signer, base, video_id, name)

    # --- uploads ---------------------------------------------------------------------------------

    def uploads_dir(self) -> Path:
        return self._uploads

    def put_upload(self, upload_id: str, tmp: Path) -> None:
        os.replace(tmp, self._uploads / upload_id)

    def upload_location(self, upload_id: str) -> Path | None:
        path = self._uploads / upload_id
        return path if path.is_file() else None

    def fetch_upload(self, upload_id: str, work: Path) -> Path | None:
        return self.upload_location(upload_id)  # on this disk already

    # --- tenants' avatar bundles -------------------------------------------------------------------

    def avatars_home(self, tenant: str) -> Path:
        return self.avatars_local(tenant)

    def avatars_local(self, tenant: str) -> Path:
        return self.root / "avatars" / tenant

    def avatars_changed(self, tenant: str, avatar_id: str) -> None:
        """Nothing to do: the folder is the storage."""
