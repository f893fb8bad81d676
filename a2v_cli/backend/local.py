"""Local mode: the API operations run on this machine, with history in `$A2V_HOME`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from a2v_cli import config
from a2v_cli.backend import GenerateOptions, ProgressFn, plan_outputs
from a2v_cli.engine import catalog
from a2v_cli.errors import A2VError, InputError, not_found
from a2v_cli.files import check_outputs, place_all, place_copy, signals_deferred
from a2v_cli.schema import Avatar, Pose, Video
from a2v_cli.store import VideoStore, new_video_id

if TYPE_CHECKING:
    from a2v_cli.engine.ingest import PhotoRequest


def file_url(path: Path) -> str:
    return path.resolve().as_uri()


def check_model(model: object, device: str) -> None:
    """A user's Wav2Lip-style model gets one test run before the video exists (bad output shape: exit 2)."""
    contract = getattr(model, "contract", None)
    path = getattr(model, "path", None)
    if contract is None or path is None:
        return
    from a2v_cli.engine.model_check import check_wav2lip_output
    from a2v_cli.engine.sessions import load_session

    session = load_session(str(path), device).session
    check_wav2lip_output(session, contract.mel_input, contract.face_input, contract.size, path.name)


def _bundle_avatar(manifest: dict[str, Any], home: Path) -> Avatar:
    folder = home / "avatars" / manifest["avatar_id"]
    return Avatar(
        avatar_id=manifest["avatar_id"],
        name=manifest["name"],
        description=manifest["description"],
        preview_image_url=file_url(folder / "preview.png"),
        pose_ids=[p["pose_id"] for p in manifest["poses"]],
    )


class LocalBackend:
    mode = "local"

    def __init__(self, home: Path | None = None) -> None:
        self._home = home
        self._store: VideoStore | None = None

    @property
    def home(self) -> Path:
        """Opened on first use: avatars and poses need no history, so no writable home either."""
        if self._home is None:
            self._home = config.home_dir()
        return self._home

    @property
    def store(self) -> VideoStore:
        if self._store is None:
            import sqlite3

            try:
                self._store = VideoStore(self.home / "a2v.db")
            except (sqlite3.Error, OSError) as err:
                raise config.home_error(self.home, f"cannot open its history database: {err}") from None
        return self._store

    def _previews(self) -> dict[str, str]:
        return {pid: file_url(p) for pid, p in catalog.preview_files().items()}

    def list_avatars(self) -> list[Avatar]:
        return catalog.avatars(self._previews())

    def list_poses(self, avatar_id: str) -> list[Pose]:
        return catalog.poses(avatar_id, self._previews())

    def add_avatar(self, request: PhotoRequest, warn: Callable[[str], None]) -> Avatar:
        """`a2v avatars add`: a photo or a clip becomes an avatar bundle in `$A2V_HOME/avatars/` (engine/ingest.py)."""
        from a2v_cli.engine import ingest

        add = ingest.add_video if request.kind == "video" else ingest.add_photo
        manifest = add(request, self.home, set(catalog.avatar_ids(include_user=False)), warn)
        return _bundle_avatar(manifest, self.home)

    def remove_avatar(self, avatar_id: str) -> Avatar:
        from a2v_cli.engine import ingest

        manifest = ingest.remove(avatar_id, self.home, set(catalog.avatar_ids(include_user=False)))
        return Avatar(avatar_id=avatar_id, name=manifest.get("name", avatar_id),
                      description=manifest.get("description", ""),
                      pose_ids=[p["pose_id"] for p in manifest.get("poses", []) if "pose_id" in p])

    def get_video(self, video_id: str) -> Video:
        video = self.store.get(video_id)
        if video is None:
            raise not_found("video", video_id, self.store.ids())
        return video

    def list_videos(self, limit: int | None = None) -> list[Video]:
        return self.store.list(limit=limit)

    def delete_video(self, video_id: str) -> dict[str, Any]:
        """Forget one video and remove its kept files (the user's own copies are not touched)."""
        outcome = self.store.delete(video_id)
        if outcome == "unknown":
            raise not_found("video", video_id, self.store.ids())
        if outcome == "busy":
            raise InputError(f"video {video_id} is still being rendered", "delete it once it is finished or failed")
        shutil.rmtree(self.home / "videos" / video_id, ignore_errors=True)
        return {"video_id": video_id, "deleted": outcome == "deleted"}

    def prune_videos(self, older_than_s: float) -> dict[str, Any]:
        """Delete every finished or failed video created more than ``older_than_s`` seconds ago."""
        from a2v_cli.store import iso_before

        ids = self.store.prune("", iso_before(older_than_s))
        for video_id in ids:
            shutil.rmtree(self.home / "videos" / video_id, ignore_errors=True)
        return {"deleted": ids, "count": len(ids)}

    def download(self, url: str, dest: Path, progress: ProgressFn | None = None, force: bool = False) -> Path:
        """Local videos are files already: put an independent copy (reflink or bytes) in place."""
        from urllib.parse import unquote, urlsplit

        src = Path(unquote(urlsplit(url).path))
        if not src.is_file():
            raise InputError(f"{src} no longer exists", "render the video again")
        check_outputs([("the output", dest)], [("the history's copy", src)], force)
        place_copy(src, dest, force)
        if progress:
            size = dest.stat().st_size
            progress(size, size)
        return dest

    def generate(self, pose_id: str, audio: str, options: GenerateOptions, progress: ProgressFn | None = None) -> Video:
        from a2v_cli.engine.audio import decode, fetch, shown_name
        from a2v_cli.engine.lipsync import load_model
        from a2v_cli.engine.render import ALPHA_FORMATS, RenderJob, pose_source, render

        catalog.pose(pose_id)  # unknown pose: exit 4 before any work
        if options.alpha_format and options.alpha_format not in ALPHA_FORMATS:
            raise InputError(f"unknown alpha format {options.alpha_format!r}", "use webm or mov")
        video_id = new_video_id()
        outputs = plan_outputs(audio, pose_id, options, video_id, Path.cwd())
        if not os.access(self.home, os.W_OK | os.X_OK):  # the history needs it: say so before any work
            raise config.home_error(self.home, "not writable")
        self.store  # noqa: B018 - opens (or refuses) the history before any work
        # the pose and the model load before the video exists: a missing GPU is not a failed video
        device = options.device or "auto"
        source = pose_source(pose_id, 25, outputs.alpha is not None, options.still, device)
        model = load_model(options.model, source, device)
        check_model(model, device)
        kept = self.home / "videos" / video_id  # the history's own copy; outputs are independent copies
        placing = done = False
        try:
            with tempfile.TemporaryDirectory(prefix="a2v-") as tmp:
                work = Path(tmp)
                audio_file = fetch(audio, work, options.stdin)
                prepared = decode(audio_file, work, config.max_audio_seconds(), shown_name(audio))
                # bad input never reaches the history; from here on a failure is recorded
                self.store.create(pose_id, status="processing", video_id=video_id, duration=prepared.duration)
                result = render(
                    RenderJob(
                        pose_id=pose_id,
                        audio=prepared,
                        video_path=kept / "video.mp4",
                        mask_path=kept / "mask.mp4",
                        alpha_path=kept / f"alpha.{options.alpha_format}" if outputs.alpha else None,
                        alpha_format=options.alpha_format,
                        device=options.device or "auto",
                        model=options.model,
                        still=options.still,
                    ),
                    on_progress=progress,
                    model=model,
                    source=source,
                )
            pairs = [(result.video_path, outputs.video), (result.mask_path, outputs.mask)]
            if result.alpha_path and outputs.alpha:
                pairs.append((result.alpha_path, outputs.alpha))
            with signals_deferred():  # finished and placed, or neither: a Ctrl-C now comes after both
                video = self.store.update(
                    video_id,
                    status="finished",
                    video_url=file_url(result.video_path),
                    mask_video_url=file_url(result.mask_path),
                    alpha_video_url=file_url(result.alpha_path) if result.alpha_path else None,
                    frame_count=result.frame_count,
                )
                placing = True
                placed = place_all(pairs, options.force)
                done = True
        except BaseException as err:
            # Ctrl-C before the outputs are in place fails the video (one that came just after the render left it
            # "processing", undeletable, with its files kept); an output refused or not written while placing leaves
            # it finished in the history, to download; a Ctrl-C held while placing comes after it: finished, placed
            if not placing or (isinstance(err, KeyboardInterrupt) and not done):
                self._failed(video_id, kept, err)
            raise
        for dest in placed:
            if options.on_saved:
                options.on_saved(dest)
        return video

    def _failed(self, video_id: str, kept: Path, err: BaseException) -> None:
        """Mark this call's video failed (if it got as far as the history) and remove its files."""
        if isinstance(err, A2VError):
            reason = err.message
        elif isinstance(err, KeyboardInterrupt):
            reason = "interrupted"
        else:
            reason = f"{err.__class__.__name__}: {err}"
        if self.store.get(video_id) is not None:
            self.store.update(video_id, status="failed", error=reason)
        shutil.rmtree(kept, ignore_errors=True)
