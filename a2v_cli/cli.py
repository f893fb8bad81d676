"""The `a2v` command line: a thin Typer layer over the backends.

Commands parse arguments, call a backend and print; `main()` is the one place that turns
errors into a message on stderr and an exit code (see `a2v_cli.errors.ExitCode`).
"""

from __future__ import annotations

import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.exceptions import TyperException

from a2v_cli import __version__
from a2v_cli.errors import EXIT_CODE_HELP, A2VError, ExitCode

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from a2v_cli.backend import GenerateOptions

HELP = f"""Turn speech into a talking-avatar video and its alpha mask.

Runs locally with the bundled lip-sync model (the default: no server, no token, no GPU needed).

{EXIT_CODE_HELP}"""

def _tidy_help() -> None:
    """Typer 0.29's help shows `<bool>` beside plain flags and `{name}` around required arguments.

    Flags take no value, and braces read as a choice; show neither (guarded: other Typer versions
    simply keep their own wording).
    """
    from typer import core

    option_type = getattr(core.TyperOption, "display_type_rich", None)
    if option_type is not None:

        def display_type_rich(self: Any, ctx: Any) -> str | None:
            return None if getattr(self, "is_flag", False) else option_type(self, ctx)

        core.TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
    if hasattr(core.TyperArgument, "_usage_display_name"):

        def usage_name(self: Any) -> str:
            name = str(self.display_name_raw).upper()
            return (name if self.required else f"[{name}]") + ("..." if self.nargs != 1 else "")

        core.TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]


_tidy_help()

app = typer.Typer(
    name="a2v",
    help=HELP,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
avatars_app = typer.Typer(help="Avatars and their poses.", no_args_is_help=True)
video_app = typer.Typer(help="Generated videos: status and history.", no_args_is_help=True)
app.add_typer(avatars_app, name="avatars")
models_app = typer.Typer(help="Lip-sync models (local mode).", no_args_is_help=True)
app.add_typer(models_app, name="models")
auth_app = typer.Typer(help="Log in to an A2V server (remote mode).", no_args_is_help=True)
app.add_typer(video_app, name="video")
app.add_typer(auth_app, name="auth")


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class CueFormat(str, Enum):
    tsv = "tsv"
    json = "json"


class AlphaFormat(str, Enum):
    webm = "webm"
    mov = "mov"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's `data` as JSON on stdout.")]
LocalOpt = Annotated[bool, typer.Option("--local", help="Run on this machine (the default when no server is set).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks.", envvar="A2V_DEBUG")]
ServerOpt = Annotated[
    str | None,
    typer.Option("--server", help="A2V server URL (else A2V_SERVER, else `a2v auth login`'s; none: local mode)."),
]
HttpTimeoutOpt = Annotated[
    float, typer.Option("--http-timeout", min=0.1, help="Seconds each HTTP request may take (remote mode).")
]
WaitOpt = Annotated[bool, typer.Option("--wait", "-w", help="Wait until the video is finished or failed.")]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=0.0, help="With --wait: give up after this many seconds (exit 7).")
]

AVATAR_COLUMNS = [("avatar_id", "AVATAR"), ("name", "NAME"), ("pose_ids", "POSES"), ("description", "DESCRIPTION")]
POSE_COLUMNS = [("pose_id", "POSE"), ("name", "NAME"), ("size", "SIZE"), ("fps", "FPS"), ("description", "DESCRIPTION")]
VIDEO_COLUMNS = [
    ("video_id", "VIDEO"),
    ("status", "STATUS"),
    ("pose_id", "POSE"),
    ("seconds", "SECONDS"),
    ("created", "CREATED UTC"),
    ("error", "ERROR"),
]


def _video_row(v: dict[str, Any]) -> dict[str, Any]:
    """A video for people: rounded duration, a readable time; the URLs are in `video get`."""
    created = (v.get("created_at") or "").replace("T", " ")[:16]
    seconds = f"{v['duration']:.1f}" if isinstance(v.get("duration"), (int, float)) else None
    return {**v, "seconds": seconds, "created": created}


def _complete_pose(incomplete: str) -> list[str]:
    from a2v_cli.engine.catalog import pose_ids

    return [p for p in pose_ids(quiet=True) if p.startswith(incomplete)]


def _complete_avatar(incomplete: str) -> list[str]:
    from a2v_cli.engine.catalog import avatar_ids

    return [a for a in avatar_ids(quiet=True) if a.startswith(incomplete)]


def _complete_video(incomplete: str) -> list[str]:
    """Video ids from the local history (remote mode: none, so a <TAB> never waits on the network)."""
    try:
        from a2v_cli import credentials

        if credentials.resolve(None).server:
            return []
        from a2v_cli.backend.local import LocalBackend

        return [v for v in LocalBackend().store.ids() if v.startswith(incomplete)]
    except Exception:  # completion must never print an error into the user's shell
        return []


def _video_output(raw: str) -> Path:
    """`-o` as typed (`Path` would turn `new/` into a file `new`): a2v_cli.files.output_arg."""
    from a2v_cli.files import output_arg

    return output_arg(raw)


def _mask_output(raw: str) -> Path:
    from a2v_cli.files import output_arg

    return output_arg(raw, "--mask-output", "out.mask.mp4")


def _text_output(raw: str) -> Path:
    """`cues -o`: `-` is stdout, as in every Unix tool."""
    from a2v_cli.files import output_arg

    return output_arg(raw, example="cues.tsv", stdout_ok=True)


VideoIdArg = Annotated[
    str,
    typer.Argument(help="A video id from `a2v generate` or `a2v video list`.", autocompletion=_complete_video),
]


def _output(json_mode: bool):  # type: ignore[no-untyped-def]
    from a2v_cli.output import Output

    return Output(json_mode=json_mode)


def _emit_rows(out: Any, items: list[dict[str, Any]], columns: Sequence[tuple[str, str]],
               row: Callable[[dict[str, Any]], dict[str, Any]] | None = None, wrap: set[str] | None = None) -> None:
    """A list command's answer: ``items`` as the API's JSON, or a table of ``row(item)`` for people."""
    if out.json_mode:
        out.json(items)
    else:
        out.table([row(i) for i in items] if row else items, columns, wrap=wrap)


def _emit_record(out: Any, data: dict[str, Any], shown: dict[str, Any] | None = None) -> None:
    """One object: ``data`` as the API's JSON, or ``shown`` (default ``data``) as `field  value` lines."""
    if out.json_mode:
        out.json(data)
    else:
        out.record(data if shown is None else shown)


def _emit_done(out: Any, data: dict[str, Any], message: str) -> None:
    """What a change did: ``data`` as JSON, or one line on stderr for people."""
    if out.json_mode:
        out.json(data)
    else:
        out.info(message)


def _backend(local: bool, server: str | None = None, http_timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """Local unless a server is configured (--server, A2V_SERVER, config); --local forces local."""
    from a2v_cli import credentials

    remote = None if local else credentials.resolve(server)
    if remote is None or remote.server is None:
        from a2v_cli.backend.local import LocalBackend

        return LocalBackend()
    from a2v_cli.backend.remote import RemoteBackend
    from a2v_cli.client import A2VClient
    from a2v_cli.errors import AuthError

    if not remote.token:
        raise AuthError(f"no token for {remote.server}", "set A2V_TOKEN or run `a2v auth login`")
    _MODE.update(mode="remote", server=remote.server)
    if not _MODE.get("json"):
        source = {"config": "`a2v auth login`"}.get(remote.server_source or "", remote.server_source)
        _output(False).info(f"Remote mode: server {remote.server} (from {source}); --local runs on this machine")
    return RemoteBackend(A2VClient(remote.server, remote.token, timeout=http_timeout))


# which mode and server this command used, for error lines (main() fills "json" from argv)
_MODE: dict[str, Any] = {"mode": "local", "server": None}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"a2v {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    debug: DebugOpt = False,
) -> None:
    """Turn speech into a talking-avatar video and its alpha mask."""
    if debug:
        os.environ["A2V_DEBUG"] = "1"


@avatars_app.command("list")
def avatars_list(
    json_: JsonOpt = False,
    local: LocalOpt = False,
    server: ServerOpt = None,
    http_timeout: HttpTimeoutOpt = 30.0,
    debug: DebugOpt = False,
) -> None:
    """List every avatar (API: avatar.list)."""
    out = _output(json_)
    items = [a.to_dict() for a in _backend(local, server, http_timeout).list_avatars()]
    _emit_rows(out, items, AVATAR_COLUMNS, row=lambda a: {**a, "pose_ids": ", ".join(a["pose_ids"] or [])})


@avatars_app.command("poses")
def avatars_poses(
    avatar_id: Annotated[
        str, typer.Argument(help="An avatar id from `a2v avatars list`.", autocompletion=_complete_avatar)
    ],
    json_: JsonOpt = False,
    local: LocalOpt = False,
    server: ServerOpt = None,
    http_timeout: HttpTimeoutOpt = 30.0,
    debug: DebugOpt = False,
) -> None:
    """List the poses of one avatar (API: avatar-pose.list)."""
    out = _output(json_)
    items = [p.to_dict() for p in _backend(local, server, http_timeout).list_poses(avatar_id)]
    _emit_rows(out, items, POSE_COLUMNS, row=lambda p: {**p, "size": f"{p['width']}x{p['height']}"})


@avatars_app.command("add")
def avatars_add(
    image: Annotated[
        Path | None, typer.Option("--image", help="A photo of one person facing the camera: JPEG, PNG, WebP or HEIC.")
    ] = None,
    video: Annotated[
        Path | None, typer.Option("--video", help="Or a short clip of them (1-10 s, any format ffmpeg reads).")
    ] = None,
    avatar_id: Annotated[str | None, typer.Option("--id", help="The new avatar's id (default: the file name).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name.")] = None,
    description: Annotated[str | None, typer.Option("--description", help="One line about the avatar.")] = None,
    size: Annotated[int, typer.Option("--size", help="Width and height of the pose in pixels (even, 256-1024).")] = 512,
    face: Annotated[int | None, typer.Option("--face", help="Which face of several (1 = largest).")] = None,
    device: Annotated[Device, typer.Option("--device", help="Where the face models run.")] = Device.auto,
    json_: JsonOpt = False,
    local: LocalOpt = False,
    server: ServerOpt = None,
    http_timeout: HttpTimeoutOpt = 30.0,
    debug: DebugOpt = False,
) -> None:
    """Make an avatar from a photo or a short clip: a head-and-shoulders pose with its matte (docs/avatars.md)."""
    from a2v_cli.engine.catalog import avatar_ids
    from a2v_cli.engine.ingest import PhotoRequest, check_request, check_source
    from a2v_cli.errors import InputError

    out = _output(json_)
    if (image is None) == (video is None):
        raise InputError("give either --image PHOTO or --video CLIP", "see `a2v avatars add --help`")
    source = image or video
    assert source is not None
    kind = "image" if image is not None else "video"
    request = PhotoRequest(source, avatar_id, name, description, size, face, device.value, kind)
    check_request(request, set(avatar_ids(include_user=False)))  # one check for both modes, before any upload
    check_source(request)
    avatar = _backend(local, server, http_timeout).add_avatar(request, out.info).to_dict()
    _emit_record(out, avatar, {**avatar, "pose_ids": ", ".join(avatar["pose_ids"])})
    if not json_:
        out.info(f"Try it: a2v generate --pose {avatar['pose_ids'][0]} --audio SPEECH.wav")


@avatars_app.command("remove")
def avatars_remove(
    avatar_id: Annotated[str, typer.Argument(help="An avatar added with `a2v avatars add`.")],
    json_: JsonOpt = False,
    local: LocalOpt = False,
    server: ServerOpt = None,
    http_timeout: HttpTimeoutOpt = 30.0,
    debug: DebugOpt = False,
) -> None:
    """Delete an avatar you added (built-in avatars cannot be removed)."""
    out = _output(json_)
    avatar = _backend(local, server, http_timeout).remove_avatar(avatar_id).to_dict()
    _emit_done(out, avatar, f"Removed avatar {avatar_id}.")


@app.command()
def generate(
    pose: Annotated[
        str,
        typer.Option("--pose", "-p", help="Pose id, from `a2v avatars poses AVATAR`.", autocompletion=_complete_pose),
    ],
    audio: Annotated[str, typer.Option("--audio", "-a", help="Speech: a file, an http(s) URL, or - for stdin.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", parser=_video_output, metavar="<path>",
                     help="Video file (MP4). Default: <audio name>-<pose>.mp4 here."),
    ] = None,
    mask_output: Annotated[
        Path | None,
        typer.Option("--mask-output", parser=_mask_output, metavar="<path>",
                     help="Alpha-mask video. Default: <output>.mask.mp4."),
    ] = None,
    alpha_format: Annotated[
        AlphaFormat | None,
        typer.Option("--alpha-format", help="Also write <output>.alpha.webm (VP9) or .alpha.mov (ProRes 4444)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing output files.")] = False,
    device: Annotated[
        Device | None, typer.Option("--device", help="Local mode: where the model runs (default auto).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Local mode: a Wav2Lip-style .onnx file or a name from `a2v models list`."),
    ] = None,
    still: Annotated[
        bool, typer.Option("--still", help="Local mode: no idle motion (head sway, blinks); only the mouth moves.")
    ] = False,
    wait: WaitOpt = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0.0, help="Remote mode, with --wait: give up after this many seconds (exit 7)."),
    ] = None,
    json_: JsonOpt = False,
    local: LocalOpt = False,
    server: ServerOpt = None,
    http_timeout: HttpTimeoutOpt = 30.0,
    debug: DebugOpt = False,
) -> None:
    """Generate a lip-synced video and its alpha mask from speech (API: video.generate).

    Local mode renders right away. Remote mode starts a job and prints it (status pending);
    --wait polls until it is done, and -o (which implies --wait) downloads the video and mask.
    """
    from a2v_cli.backend import GenerateOptions

    out = _output(json_)
    options = GenerateOptions(
        output=output,
        mask_output=mask_output,
        alpha_format=alpha_format.value if alpha_format else None,
        force=force,
        device=device.value if device else None,
        model=model,
        still=still,
        on_saved=lambda path: out.info(f"Saved {path}"),
    )
    _check_audio_arg(audio)
    backend = _backend(local, server, http_timeout)
    if still and backend.mode != "local":
        from a2v_cli.errors import InputError

        raise InputError("--still works in local mode only: the A2V API has no such option",
                         "add --local to render on this machine")
    if backend.mode == "local":
        if timeout is not None:
            from a2v_cli.errors import InputError

            raise InputError(
                "--timeout is for waiting on a server's video (remote mode)",
                "drop it: a local render runs until it is done (Ctrl-C stops it)",
            )
        with out.progress(f"Rendering {pose} locally") as progress:
            video = backend.generate(pose, audio, options, progress)
    else:
        from a2v_cli.backend import plan_outputs
        from a2v_cli.errors import InputError

        backend.check_options(options)
        if mask_output is not None and output is None:
            raise InputError("in remote mode --mask-output needs -o FILE", "add -o FILE: it downloads video and mask")
        # the same check as local mode, before anything is uploaded
        targets = plan_outputs(audio, pose, options, "", Path.cwd()) if output is not None else None
        audio_arg = _spool_stdin(audio, options)
        video = backend.generate(pose, audio_arg, options)
        out.info(f"Started {video.video_id} ({video.status})")
        _MODE["started"] = video.video_id  # Ctrl-C from here on stops only the waiting, not the server's render
        if wait or targets:
            video = _wait(out, backend, video, 1800.0 if timeout is None else timeout, json_)
        if targets:
            pairs = [(video.video_url, targets.video), (video.mask_video_url, targets.mask)]
            if targets.alpha:
                pairs.append((video.alpha_video_url, targets.alpha))
            _fetch(out, backend, pairs, force)
    _emit_record(out, video.to_dict())


def _check_audio_arg(audio: str) -> None:
    from a2v_cli.errors import InputError

    if not audio.strip():
        raise InputError("--audio is empty", "give an audio file, an http(s) URL, or - for stdin")


def _spool_stdin(audio: str, options: GenerateOptions) -> str:
    """Keep stdin in a temp file so an upload can be retried."""
    if audio != "-":
        return audio
    import tempfile

    from a2v_cli.engine.audio import copy_stream

    spool = tempfile.TemporaryFile()
    copy_stream(sys.stdin.buffer, spool, "stdin")
    spool.seek(0)
    options.stdin = spool
    return audio


def _wait(out: Any, backend: Any, video: Any, timeout: float, json_: bool) -> Any:
    """Poll with backoff; on failure or timeout print the last known state, then raise."""
    from a2v_cli.backend import wait_for

    last = {"status": ""}

    def show(v: Any) -> None:
        if v.status != last["status"]:
            out.info(f"{v.video_id}: {v.status}")
            last["status"] = v.status

    try:
        return wait_for(backend, video, timeout, show)
    except A2VError as err:
        state = getattr(err, "video", None)
        if state is not None:
            _emit_record(out, state.to_dict())
        raise


def _fetch(out: Any, backend: Any, pairs: list[tuple[str | None, Path]], force: bool) -> None:
    """Download every file, all or none: a refusal or failure removes the ones this call created."""
    from a2v_cli.errors import VideoFailedError

    for url, dest in pairs:
        if not url:
            raise VideoFailedError(f"the server gave no URL for {dest.name}")
    done: list[Path] = []
    try:
        for url, dest in pairs:
            with out.progress(f"Downloading {dest.name}", unit="bytes") as progress:
                backend.download(url, dest, progress, force)
            done.append(dest)
    except BaseException:
        if not force:
            for path in done:
                path.unlink(missing_ok=True)
        raise
    for dest in done:
        out.info(f"Saved {dest}")


@video_app.command("get")
def video_get(
    video_id: VideoIdArg,
    wait: WaitOpt = False,
    timeout: TimeoutOpt = 1800.0,
    json_: JsonOpt = False,
    local: LocalOpt = False,
    server: ServerOpt = None,
    http_timeout: HttpTimeoutOpt = 30.0,
    debug: DebugOpt = False,
) -> None:
    """Show one video's status and files (API: video.get)."""
    out = _output(json_)
    backend = _backend(local, server, http_timeout)
    video = backend.get_video(video_id)
    if wait:
        video = _wait(out, backend, video, timeout, json_)
    _emit_record(out, video.to_dict())


@video_app.command("list")
def video_list(
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Show at most N videos.")] = None,
    json_: JsonOpt = False,
    local: LocalOpt = False,
    server: ServerOpt = None,
    http_timeout: HttpTimeoutOpt = 30.0,
    debug: DebugOpt = False,
) -> None:
    """List videos, newest first (API: video.list)."""
    out = _output(json_)
    items = [v.to_dict() for v in _backend(local, server, http_timeout).list_videos(limit)]
    columns = [c for c in VIDEO_COLUMNS if c[0] != "error" or any(v.get("error") for v in items)]
    _emit_rows(out, items, columns, row=_video_row, wrap={"error"})


@video_app.command("download")
def video_download(
    video_id: VideoIdArg,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Directory to save into.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing files.")] = False,
    json_: JsonOpt = False,
    local: LocalOpt = False,
    server: ServerOpt = None,
    http_timeout: HttpTimeoutOpt = 30.0,
    debug: DebugOpt = False,
) -> None:
    """Download a video, its mask (and alpha file) as <id>.mp4, <id>.mask.mp4 (extension)."""
    from a2v_cli.errors import InputError, VideoFailedError
    from a2v_cli.files import check_outputs

    out = _output(json_)
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{output_dir} is not a directory", "give -o an existing directory")
    backend = _backend(local, server, http_timeout)
    video = backend.get_video(video_id)
    if video.status == "failed":
        raise VideoFailedError(
            f"video {video_id} failed ({video.error or 'no reason given'}); there is nothing to download",
            "render it again with `a2v generate`",
        )
    if video.status != "finished":
        raise InputError(f"video {video_id} is {video.status}, not finished", f"a2v video get {video_id} --wait")
    pairs = [
        (video.video_url, output_dir / f"{video_id}.mp4"),
        (video.mask_video_url, output_dir / f"{video_id}.mask.mp4"),
    ]
    if video.alpha_video_url:
        ext = Path(video.alpha_video_url.split("?")[0]).suffix or ".webm"
        pairs.append((video.alpha_video_url, output_dir / f"{video_id}.alpha{ext}"))
    check_outputs([("the output", dest) for _, dest in pairs], [], force)
    _fetch(out, backend, pairs, force)
    files = [str(dest.absolute()) for _, dest in pairs]
    _emit_record(out, {"video_id": video_id, "files": files}, {"video_id": video_id, "files": ", ".join(files)})


@video_app.command("delete")
def video_delete(
    video_id: VideoIdArg,
    json_: JsonOpt = False,
    local: LocalOpt = False,
    server: ServerOpt = None,
    http_timeout: HttpTimeoutOpt = 30.0,
    debug: DebugOpt = False,
) -> None:
    """Delete one video from the history and its kept files (files you saved with -o stay)."""
    out = _output(json_)
    result = _backend(local, server, http_timeout).delete_video(video_id)
    _emit_done(out, result, f"Deleted {video_id}." if result["deleted"] else f"{video_id} was already deleted.")


@video_app.command("prune")
def video_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age, e.g. 30d, 12h, 90m, 2w: delete finished and failed videos older.")
    ],
    json_: JsonOpt = False,
    local: LocalOpt = False,
    server: ServerOpt = None,
    http_timeout: HttpTimeoutOpt = 30.0,
    debug: DebugOpt = False,
) -> None:
    """Delete old videos from the history and their kept files (files you saved with -o stay)."""
    out = _output(json_)
    seconds = parse_duration(older_than)
    result = _backend(local, server, http_timeout).prune_videos(seconds)
    _emit_done(out, result, f"Deleted {result['count']} video(s) older than {older_than}.")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'30d', '12h', '90m', '45s', '2w' (or a combination such as '1d12h') in seconds; exit 2 otherwise."""
    import re

    from a2v_cli.errors import InputError

    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhdw])", text.strip().lower())
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([smhdw])", "", text.strip().lower()).strip():
        raise InputError(f"--older-than {text!r} is not a duration", "use a number and a unit, e.g. 30d, 12h, 90m")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds > 1e11:  # over 3000 years: older than any video (and beyond what dates can hold)
        seconds = 1e11
    return seconds


@app.command()
def cues(
    audio: Annotated[str, typer.Argument(help="Speech: a file, an http(s) URL, or - for stdin.")],
    fmt: Annotated[
        CueFormat | None,
        typer.Option("--format", help="Rhubarb Lip Sync's TSV or JSON layout (default: -o's extension, else tsv)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", parser=_text_output, metavar="<path>",
                     help="Write to a file instead of stdout (- is stdout)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output file.")] = False,
    extended: Annotated[
        str,
        typer.Option(
            "--extended-shapes",
            help="Rhubarb's extended shapes your art has (G: F/V, H: L, X: idle); missing ones get stand-ins"
            " (G->B, H->C, X->A). '' for none.",
        ),
    ] = "GHX",
    device: Annotated[Device, typer.Option("--device", help="Where the model runs.")] = Device.auto,
    json_: Annotated[bool, typer.Option("--json", help="The same as --format json (errors as JSON too).")] = False,
    debug: DebugOpt = False,
) -> None:
    """Mouth cues for 2D animation (Rhubarb shapes A-F, G, H, X) from the built-in audio model (local)."""
    import tempfile

    from a2v_cli import config
    from a2v_cli.engine import cues as cue_mod
    from a2v_cli.engine.audio import decode, fetch, shown_name
    from a2v_cli.files import check_outputs, input_file, write_text_new

    _check_audio_arg(audio)
    extended = cue_mod.check_extended(extended)
    if output is not None and str(output) == "-":
        output = None
    fmt = _cue_format(fmt, json_, output)
    if output is not None:
        ext = f".{fmt.value}"
        check_outputs([("the output", output)], [("the audio", input_file(audio))], force, example=f"cues{ext}")
    with tempfile.TemporaryDirectory(prefix="a2v-") as tmp:
        prepared = decode(fetch(audio, Path(tmp)), Path(tmp), config.max_audio_seconds(), shown_name(audio))
        found = cue_mod.mouth_cues(prepared, device.value, extended)
    if fmt is CueFormat.json:
        text = cue_mod.to_json(found, cue_mod.sound_name(audio), prepared.duration)
    else:
        text = cue_mod.to_tsv(found, extended)
    if output is None:
        sys.stdout.write(text)
        return
    write_text_new(output, text, force)


def _cue_format(fmt: CueFormat | None, json_: bool, output: Path | None) -> CueFormat:
    """The layout: --format, or --json, or what `-o`'s extension says; a contradiction is exit 2.

    Why: `cues talk.wav -o talk.json` used to write TSV into a .json file (exit 0), which a JSON reader rejects.
    """
    from a2v_cli.errors import InputError

    said = {".json": CueFormat.json, ".tsv": CueFormat.tsv}.get(output.suffix.lower()) if output else None
    asked = CueFormat.json if json_ else fmt
    if json_ and fmt is CueFormat.tsv:
        raise InputError("--json and --format tsv contradict each other", "give one of them")
    if asked is not None and said is not None and asked is not said:
        raise InputError(f"-o {output.name} says {said.value.upper()} but the cues would be {asked.value.upper()}",
                         f"name it {output.stem}.{asked.value}, or drop {'--json' if json_ else '--format'}")
    return asked or said or CueFormat.tsv


@models_app.command("list")
def models_list(json_: JsonOpt = False, debug: DebugOpt = False) -> None:
    """The built-in model and the Wav2Lip-style .onnx files in $A2V_HOME/models."""
    from a2v_cli.engine.lipsync import available_models, model_dir, user_models_dir

    out = _output(json_)
    rows = []
    for name, path in available_models().items():
        if path is None:
            rows.append({"name": name, "kind": "a2v built-in", "path": str(model_dir())})
            continue
        from a2v_cli.engine.model_check import check_wav2lip_output
        from a2v_cli.engine.sessions import load_session
        from a2v_cli.engine.wav2lip import detect_contract

        try:
            session = load_session(str(path), "cpu").session
            contract = detect_contract(session)
            check_wav2lip_output(session, contract.mel_input, contract.face_input, contract.size, path.name)
            kind = f"wav2lip {contract.size}x{contract.size}"
        except A2VError as err:
            kind = f"unusable: {err.message}"
        rows.append({"name": name, "kind": kind, "path": str(path)})
    _emit_rows(out, rows, [("name", "MODEL"), ("kind", "KIND"), ("path", "PATH")])
    if not json_:
        out.info(f"Drop Wav2Lip-style .onnx files into {user_models_dir()} to use them with --model NAME.")


@auth_app.command("login")
def auth_login(
    server: Annotated[str | None, typer.Option("--server", help="Server URL (else A2V_SERVER).")] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Check the token against the server.")] = True,
    json_: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Store a token for a server (read from stdin, or a hidden prompt; never a flag)."""
    import getpass

    from a2v_cli import credentials
    from a2v_cli.errors import InputError

    url = server or os.environ.get("A2V_SERVER") or credentials.load_config().get("server")
    if not url:
        raise InputError("no server given", "use --server URL or set A2V_SERVER")
    url = credentials.normalize_server(url)
    token = getpass.getpass(f"Token for {url}: ") if sys.stdin.isatty() else sys.stdin.readline()
    token = token.strip()
    if not token:
        raise InputError("no token given", "pipe it in, e.g. `a2v auth login --server URL < token.txt`")
    credentials.check_token(token, "stdin")
    if verify:
        from a2v_cli.backend.remote import RemoteBackend
        from a2v_cli.client import A2VClient

        RemoteBackend(A2VClient(url, token)).list_avatars()
    path = credentials.store_login(url, token)
    if json_:
        _output(True).json({"server": url, "config_file": str(path)})
    else:
        _output(False).info(f"Logged in to {url}; token stored in {path} (mode 0600).")


@auth_app.command("status")
def auth_status(
    server: ServerOpt = None,
    json_: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Which server and which source of token would be used (never the token itself)."""
    from a2v_cli import credentials

    out = _output(json_)
    remote = credentials.resolve(server)
    data = {
        "mode": "remote" if remote.server else "local",
        "server": remote.server,
        "server_source": remote.server_source,
        "token_source": remote.token_source,
        "config_file": str(credentials.config_path()),
    }
    _emit_record(out, data, {k: ("none" if v is None else v) for k, v in data.items()})


@auth_app.command("logout")
def auth_logout(
    server: Annotated[str | None, typer.Option("--server", help="Server URL (default: the stored one).")] = None,
    json_: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Forget the stored token (A2V_TOKEN in the environment is not affected)."""
    from a2v_cli import credentials

    config = credentials.load_config()
    url = credentials.normalize_server(server) if server else config.get("server")
    forgot = bool(url and credentials.forget_login(url))
    if json_:
        _output(True).json({"server": url, "logged_out": forgot})
    elif forgot:
        _output(False).info(f"Logged out of {url}.")
    else:
        _output(False).info("No stored login.")


BrokerOpt = Annotated[str | None, typer.Option(
    "--broker", envvar="A2V_BROKER", help="Distributed: the Celery broker, e.g. redis://host:6379/0.")]
DatabaseOpt = Annotated[str | None, typer.Option(
    "--database", envvar="A2V_DATABASE",
    help="Distributed: postgresql://user@host:port/db (a password belongs in A2V_DATABASE or ~/.pgpass).")]
StorageOpt = Annotated[str | None, typer.Option(
    "--storage", envvar="A2V_STORAGE",
    help="Distributed: a directory every front end and worker mounts, or s3://bucket/prefix (AWS_* settings).")]
QueueOpt = Annotated[str, typer.Option("--queue", help="Distributed: the queue jobs go to / are taken from.")]
MaxTriesOpt = Annotated[int, typer.Option(
    "--max-tries", min=1, help="A job whose render is cut short this many times fails with the reason.")]
LogFormatOpt = Annotated[str, typer.Option("--log-format", help="text, or json (one object per line, job ids).")]


serve_app = typer.Typer(invoke_without_command=True)
app.add_typer(serve_app, name="serve")


def _serve_commands() -> None:
    """`a2v serve tokens ...` (its own module: the distributed deployment's operator commands)."""
    from a2v_cli.serve_tokens import tokens_app

    serve_app.add_typer(tokens_app, name="tokens")


_serve_commands()


@serve_app.callback()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps it on this machine.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="Jobs, videos and secrets (default: $A2V_HOME/server).")] = None,
    workers: Annotated[int, typer.Option(min=0, help="Videos rendered at once (0: accept jobs, render none).")] = 1,
    tokens_file: Annotated[Path | None, typer.Option(help='JSON {"name": "token"} (also A2V_SERVER_TOKENS).')] = None,
    allow_private_urls: Annotated[
        bool, typer.Option(help="Let audio_url reach private/loopback addresses (on-premise use, tests).")
    ] = False,
    public_url: Annotated[str | None, typer.Option(help="Base of the URLs the server hands out.")] = None,
    device: Annotated[Device, typer.Option("--device", help="Where the model runs.")] = Device.auto,
    broker: BrokerOpt = None,
    database: DatabaseOpt = None,
    storage: StorageOpt = None,
    queue: QueueOpt = "a2v",
    claim_timeout: Annotated[float, typer.Option(
        "--claim-timeout", help="Seconds a job may wait for a worker before it shows as unclaimed.")] = 300.0,
    max_tries: MaxTriesOpt = 3,
    log_format: LogFormatOpt = "text",
    debug: DebugOpt = False,
) -> None:
    """Run the A2V API as a server over the local renderer (see docs/server.md).

    With --broker, --database and --storage it is a front end only: `a2v worker` renders (docs/deploy.md).

    `a2v serve tokens add|list|revoke` manage the distributed deployment's tokens.
    """
    if ctx.invoked_subcommand is not None:  # `a2v serve [--database URL] tokens ...`: not the server
        ctx.obj = {"database": database}
        return
    from a2v_cli.server import ServerSettings
    from a2v_cli.server import serve as run_server

    settings = ServerSettings(
        host=host,
        port=port,
        data_dir=data_dir,
        workers=workers,
        tokens_file=tokens_file,
        allow_private_urls=allow_private_urls,
        public_url=public_url,
        device=device.value,
        broker=broker,
        database=database,
        storage=storage,
        queue=queue,
        claim_timeout_s=claim_timeout,
        max_tries=max_tries,
        log_format=log_format,
    )
    try:
        run_server(settings)
    except KeyboardInterrupt:  # Ctrl-C is how a server is stopped: not an error
        if log_format != "json":  # every line of a JSON log is JSON; uvicorn's last line said it stopped
            _output(False).info("a2v serve stopped.")


@app.command()
def worker(
    broker: BrokerOpt = None,
    database: DatabaseOpt = None,
    storage: StorageOpt = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Videos rendered at once.")] = 1,
    device: Annotated[Device, typer.Option("--device", help="Where the model runs.")] = Device.auto,
    queue: QueueOpt = "a2v",
    max_tries: MaxTriesOpt = 3,
    log_format: LogFormatOpt = "text",
    debug: DebugOpt = False,
) -> None:
    """Render jobs of a distributed `a2v serve` (needs --broker, --database and --storage; docs/deploy.md).

    SIGTERM finishes the current job (or hands it back to the queue after 30 s) and exits 0.
    """
    from a2v_cli.server.worker import WorkerSettings, run_worker

    code = run_worker(WorkerSettings(broker=broker, database=database, storage=storage, concurrency=concurrency,
                              device=device.value, queue=queue, max_tries=max_tries, log_format=log_format))
    if code:
        raise typer.Exit(code)


def _fail(message: str, code: int, json_errors: bool = False, hint: str | None = None) -> NoReturn:
    """One line on stderr: text, or with --json a JSON object {error, hint, exit_code} for scripts."""
    if json_errors:
        import json

        where = {"mode": _MODE["mode"], "server": _MODE["server"]}
        sys.stderr.write(json.dumps({"error": message, "hint": hint, "exit_code": int(code), **where}) + "\n")
    else:
        from a2v_cli.output import Output

        Output().error(f"{message}; {hint}" if hint else message)
    sys.exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM: unwinds like Ctrl-C (temp files removed, the video marked failed), then exit 143."""


_SIGNALLED = {"term": False}


def _on_sigterm(signum: int, frame: Any) -> None:
    _SIGNALLED["term"] = True
    raise Terminated


def _stopped(json_errors: bool) -> NoReturn:
    started = _MODE.get("started")
    hint = (f"the server keeps rendering {started}: `a2v video get {started} --wait`, then "
            f"`a2v video download {started}`" if started else None)
    if _SIGNALLED["term"]:
        _fail("terminated", ExitCode.TERMINATED, json_errors, hint)
    _fail("interrupted", ExitCode.INTERRUPTED, json_errors, hint)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and map every outcome onto one exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("A2V_DEBUG") not in (None, "", "0")
    json_errors = "--json" in args
    _MODE["json"] = json_errors
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        rv = typer.main.get_command(app).main(args=args, prog_name="a2v", standalone_mode=False)
    except A2VError as err:
        if debug:
            import traceback

            traceback.print_exc()
        _fail(err.message, int(err.exit_code), json_errors, err.hint)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except TyperException as err:  # usage errors from the argument parser
        code = ExitCode.USAGE if getattr(err, "exit_code", 2) == 2 else err.exit_code
        if not err.format_message():  # a group called without a command: its help was printed
            sys.exit(code)
        ctx = getattr(err, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = err.format_message().replace("Value error, ", "")  # pydantic's wording, not ours
        _fail(f"{message}{where}", code, json_errors)
    except (KeyboardInterrupt, typer.Abort):
        _stopped(json_errors)
    except Exception as err:
        if debug:
            raise
        _fail(
            f"unexpected {err.__class__.__name__}: {err} (run with --debug for the traceback)",
            ExitCode.FAILURE,
            json_errors,
        )
    if rv == ExitCode.INTERRUPTED:  # Typer turns Ctrl-C inside a command into a returned 130
        _stopped(json_errors)
    sys.exit(rv if isinstance(rv, int) else 0)
