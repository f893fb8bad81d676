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
from typing import Annotated, Any, NoReturn

import typer
from typer.exceptions import TyperException

from a2v_cli import __version__
from a2v_cli.errors import EXIT_CODE_HELP, A2VError, ExitCode

HELP = f"""Turn speech into a talking-avatar video and its alpha mask.

Runs locally with the bundled lip-sync model (the default: no server, no token, no GPU needed).

{EXIT_CODE_HELP}"""

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
app.add_typer(video_app, name="video")


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class AlphaFormat(str, Enum):
    webm = "webm"
    mov = "mov"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's `data` as JSON on stdout.")]
LocalOpt = Annotated[bool, typer.Option("--local", help="Run on this machine (the default when no server is set).")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks.", envvar="A2V_DEBUG")]

AVATAR_COLUMNS = [("avatar_id", "AVATAR"), ("name", "NAME"), ("pose_ids", "POSES"), ("description", "DESCRIPTION")]
POSE_COLUMNS = [("pose_id", "POSE"), ("name", "NAME"), ("size", "SIZE"), ("fps", "FPS"), ("description", "DESCRIPTION")]
VIDEO_COLUMNS = [("video_id", "VIDEO"), ("status", "STATUS"), ("pose_id", "POSE"), ("duration", "SECONDS"),
                 ("created_at", "CREATED"), ("video_url", "VIDEO URL")]


def _complete_pose(incomplete: str) -> list[str]:
    from a2v_cli.engine.art import POSES

    return [p for p in POSES if p.startswith(incomplete)]


def _complete_avatar(incomplete: str) -> list[str]:
    from a2v_cli.engine.art import AVATARS

    return [a for a in AVATARS if a.startswith(incomplete)]


def _output(json_mode: bool):  # type: ignore[no-untyped-def]
    from a2v_cli.output import Output

    return Output(json_mode=json_mode)


def _backend(local: bool):  # type: ignore[no-untyped-def]
    from a2v_cli.backend.local import LocalBackend

    return LocalBackend()


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
def avatars_list(json_: JsonOpt = False, local: LocalOpt = False, debug: DebugOpt = False) -> None:
    """List every avatar (API: avatar.list)."""
    out = _output(json_)
    items = [a.to_dict() for a in _backend(local).list_avatars()]
    if json_:
        out.json(items)
    else:
        out.table([{**a, "pose_ids": ", ".join(a["pose_ids"])} for a in items], AVATAR_COLUMNS)


@avatars_app.command("poses")
def avatars_poses(
    avatar_id: Annotated[str, typer.Argument(help="An avatar id from `a2v avatars list`.", autocompletion=_complete_avatar)],
    json_: JsonOpt = False,
    local: LocalOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List the poses of one avatar (API: avatar-pose.list)."""
    out = _output(json_)
    items = [p.to_dict() for p in _backend(local).list_poses(avatar_id)]
    if json_:
        out.json(items)
    else:
        out.table([{**p, "size": f"{p['width']}x{p['height']}"} for p in items], POSE_COLUMNS)


@app.command()
def generate(
    pose: Annotated[str, typer.Option("--pose", "-p", help="Pose id, from `a2v avatars poses AVATAR`.", autocompletion=_complete_pose)],
    audio: Annotated[str, typer.Option("--audio", "-a", help="Speech: a file, an http(s) URL, or - for stdin.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Video file (MP4). Default: <audio name>-<pose>.mp4 here.")
    ] = None,
    mask_output: Annotated[
        Path | None, typer.Option("--mask-output", help="Alpha-mask video. Default: <output>.mask.mp4.")
    ] = None,
    alpha_format: Annotated[
        AlphaFormat | None,
        typer.Option("--alpha-format", help="Also write <output>.alpha.webm (VP9) or .alpha.mov (ProRes 4444)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing output files.")] = False,
    device: Annotated[Device, typer.Option("--device", help="Where the model runs.")] = Device.auto,
    json_: JsonOpt = False,
    local: LocalOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Generate a lip-synced video and its alpha mask from speech (API: video.generate)."""
    from a2v_cli.backend import GenerateOptions

    out = _output(json_)
    options = GenerateOptions(
        output=output,
        mask_output=mask_output,
        alpha_format=alpha_format.value if alpha_format else None,
        force=force,
        device=device.value,
    )
    with out.progress(f"Rendering {pose}") as progress:
        video = _backend(local).generate(pose, audio, options, progress)
    data = video.to_dict()
    if json_:
        out.json(data)
    else:
        out.record(data)


@video_app.command("get")
def video_get(
    video_id: Annotated[str, typer.Argument(help="A video id from `a2v generate` or `a2v video list`.")],
    json_: JsonOpt = False,
    local: LocalOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show one video's status and files (API: video.get)."""
    out = _output(json_)
    data = _backend(local).get_video(video_id).to_dict()
    if json_:
        out.json(data)
    else:
        out.record(data)


@video_app.command("list")
def video_list(
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Show at most N videos.")] = None,
    json_: JsonOpt = False,
    local: LocalOpt = False,
    debug: DebugOpt = False,
) -> None:
    """List videos, newest first (API: video.list)."""
    out = _output(json_)
    items = [v.to_dict() for v in _backend(local).list_videos(limit)]
    if json_:
        out.json(items)
    else:
        out.table(items, VIDEO_COLUMNS)


def _fail(message: str, code: int) -> NoReturn:
    from a2v_cli.output import Output

    Output().error(message)
    sys.exit(code)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and map every outcome onto one exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("A2V_DEBUG") not in (None, "", "0")
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        rv = typer.main.get_command(app).main(args=args, prog_name="a2v", standalone_mode=False)
    except A2VError as err:
        if debug:
            import traceback

            traceback.print_exc()
        _fail(str(err), int(err.exit_code))
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except TyperException as err:  # usage errors from the argument parser
        code = ExitCode.USAGE if getattr(err, "exit_code", 2) == 2 else err.exit_code
        if not err.format_message():  # a group called without a command: its help was printed
            sys.exit(code)
        ctx = getattr(err, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(f"{err.format_message()}{where}", code)
    except (KeyboardInterrupt, typer.Abort):
        _fail("interrupted", ExitCode.INTERRUPTED)
    except Exception as err:
        if debug:
            raise
        _fail(f"unexpected {err.__class__.__name__}: {err} (run with --debug for the traceback)", ExitCode.FAILURE)
    sys.exit(rv if isinstance(rv, int) else 0)
