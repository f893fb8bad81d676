"""Local mode: the API operations run on this machine, with history in `$A2V_HOME`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from a2v_cli import config
from a2v_cli.backend import GenerateOptions, ProgressFn
from a2v_cli.engine import catalog
from a2v_cli.errors import A2VError, InputError, not_found
from a2v_cli.schema import Avatar, Pose, Video
from a2v_cli.store import VideoStore, new_video_id

if TYPE_CHECKING:
    from a2v_cli.engine.ingest import PhotoRequest


def file_url(path: Path) -> str:
    return path.resolve().as_uri()


def default_outputs(audio: str, pose_id: str, video_id: str, cwd: Path) -> Path:
    """`<audio stem>-<pose>.mp4` in the current directory; `a2v-<video id>.mp4` for stdin and URLs."""
    if audio == "-" or "://" in audio:
        return cwd / f"a2v-{video_id}.mp4"
    return cwd / f"{Path(audio).stem}-{pose_id}.mp4"


def mask_path_for(video: Path) -> Path:
    return video.with_name(f"{video.stem}.mask.mp4")


def alpha_path_for(video: Path, fmt: str) -> Path:
    return video.with_name(f"{video.stem}.alpha.{fmt}")


def check_writable(path: Path, force: bool) -> None:
    """Refuse an existing file unless forced, and a directory we cannot write into."""
    if path.exists() and path.is_dir():
        raise InputError(f"output {path} is a directory", "give a file name, e.g. -o out.mp4")
    if path.exists() and not force:
        raise InputError(f"output {path} already exists", "use --force to overwrite it, or choose another -o")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: directory {parent} does not exist", "create it or choose another -o")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {path}: directory {parent} is not writable", "choose another -o")


def place(src: Path, dest: Path) -> Path:
    """Put ``src`` at ``dest`` atomically: a hard link when possible (no extra disk), else a copy."""
    tmp = dest.with_name(f".{dest.name}.part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    tmp.replace(dest)
    return dest


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
        self.home = home or config.home_dir()
        self.store = VideoStore(self.home / "a2v.db")

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

    def download(self, url: str, dest: Path, progress: ProgressFn | None = None) -> Path:
        """Local videos are files already: link or copy one into place."""
        from urllib.parse import unquote, urlsplit

        src = Path(unquote(urlsplit(url).path))
        if not src.is_file():
            raise InputError(f"{src} no longer exists", "render the video again")
        place(src, dest)
        if progress:
            size = dest.stat().st_size
            progress(size, size)
        return dest

    def generate(self, pose_id: str, audio: str, options: GenerateOptions, progress: ProgressFn | None = None) -> Video:
        from a2v_cli.engine.audio import decode, fetch
        from a2v_cli.engine.lipsync import load_model
        from a2v_cli.engine.render import ALPHA_FORMATS, RenderJob, pose_source, render

        catalog.pose(pose_id)  # unknown pose: exit 4 before any work
        if options.alpha_format and options.alpha_format not in ALPHA_FORMATS:
            raise InputError(f"unknown alpha format {options.alpha_format!r}", "use webm or mov")
        video_id = new_video_id()
        video_path = (options.output or default_outputs(audio, pose_id, video_id, Path.cwd())).absolute()
        mask_path = (options.mask_output or mask_path_for(video_path)).absolute()
        alpha_path = alpha_path_for(video_path, options.alpha_format) if options.alpha_format else None
        paths = [p for p in (video_path, mask_path, alpha_path) if p is not None]
        if len(set(paths)) != len(paths):
            raise InputError("the video and mask outputs must be different files", "change --mask-output")
        for p in paths:
            check_writable(p, options.force)
        # the pose and the model load before the video exists: a missing GPU is not a failed video
        source = pose_source(pose_id, 25, alpha_path is not None, options.still, options.device)
        model = load_model(options.model, source, options.device)
        kept = self.home / "videos" / video_id  # the history's own copy; outputs are links to it
        with tempfile.TemporaryDirectory(prefix="a2v-") as tmp:
            work = Path(tmp)
            prepared = decode(fetch(audio, work, options.stdin), work, config.max_audio_seconds())
            # bad input never reaches the history; from here on a failure is recorded
            self.store.create(pose_id, status="processing", video_id=video_id, duration=prepared.duration)
            try:
                result = render(
                    RenderJob(
                        pose_id=pose_id,
                        audio=prepared,
                        video_path=kept / "video.mp4",
                        mask_path=kept / "mask.mp4",
                        alpha_path=kept / f"alpha.{options.alpha_format}" if alpha_path else None,
                        alpha_format=options.alpha_format,
                        device=options.device,
                        model=options.model,
                        still=options.still,
                    ),
                    on_progress=progress,
                    model=model,
                    source=source,
                )
            except BaseException as err:
                if isinstance(err, A2VError):
                    reason = err.message
                elif isinstance(err, KeyboardInterrupt):
                    reason = "interrupted"
                else:
                    reason = f"{err.__class__.__name__}: {err}"
                self.store.update(video_id, status="failed", error=reason)
                shutil.rmtree(kept, ignore_errors=True)
                raise
        video = self.store.update(
            video_id,
            status="finished",
            video_url=file_url(result.video_path),
            mask_video_url=file_url(result.mask_path),
            alpha_video_url=file_url(result.alpha_path) if result.alpha_path else None,
            frame_count=result.frame_count,
        )
        pairs = [(result.video_path, video_path), (result.mask_path, mask_path)]
        if result.alpha_path and alpha_path:
            pairs.append((result.alpha_path, alpha_path))
        for src, dest in pairs:
            place(src, dest)
            if options.on_saved:
                options.on_saved(dest)
        return video
