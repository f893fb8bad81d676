"""Where result files and uploads live: one directory, laid out the same in both deployments.

Why one class for both: the embedded server keeps its files in its data dir; the distributed one in
a directory every host mounts (``--storage``). The layout is the same (``videos/<id>/``, ``uploads/<id>``,
``avatars/<tenant>/``), so the routes, the avatar code and the workers read and write through one
interface and never ask which deployment runs. Results are published by temp-then-rename of their
whole folder, so a reader sees no result or a complete one, and two workers that rendered the same job
(one of them presumed dead) cannot leave two output sets: the second rename finds the folder there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from a2v_cli.server.security import UrlSigner

API = "/v1/a2v"
RESULT_FILES = ("video.mp4", "mask.mp4", "alpha.webm", "alpha.mov")


class LocalBlobs:
    """Result files and uploads under ``root``; links to them are signed, expiring front-end URLs."""

    def __init__(self, root: Path, signer: UrlSigner | None) -> None:
        self.root = root
        self.signer = signer

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

    @contextlib.contextmanager
    def staged(self, video_id: str, files: Iterable[Path] = ()) -> Iterator[Path]:
        """A new staging folder (holding copies of ``files``), for a render to write into; whatever is not
        published from it by the end of the block is removed, however the block ends."""
        folder = self.staging(video_id)
        try:
            for f in files:
                shutil.copyfile(f, folder / f.name)
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

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

    def url(self, base: str, video_id: str, name: str) -> str:
        """A signed, expiring link to a result file (served by any front end: no token needed)."""
        assert self.signer is not None, "a worker's storage signs no links"
        expires, sig = self.signer.sign(video_id, name)
        return f"{base}{API}/files/{video_id}/{name}?expires={expires}&signature={sig}"

    # --- uploads ---------------------------------------------------------------------------------

    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    def upload_file(self, upload_id: str) -> Path:
        return self.uploads_dir() / upload_id
