"""Avatars, poses, history and error handling of the CLI, in local mode, through a real subprocess."""

from __future__ import annotations

from pathlib import Path

from conftest import decode_frames, run_cli

from a2v_cli.errors import ExitCode


def test_version_and_help() -> None:
    r = run_cli("--version")
    assert r.code == 0 and r.stdout.startswith("a2v ")
    r = run_cli("--help")
    assert r.code == 0
    text = " ".join(r.stdout.replace("│", " ").split())
    for word in ("generate", "avatars", "video", "Exit codes", "4 not found", "130 interrupted"):
        assert word in text


def test_avatars_list_json_shape() -> None:
    r = run_cli("avatars", "list", "--json")
    assert r.code == 0, r.stderr
    avatars = r.json()
    assert isinstance(avatars, list) and len(avatars) >= 3
    for a in avatars:
        assert {"avatar_id", "name", "description", "preview_image_url", "pose_ids"} <= set(a)
        assert len(a["pose_ids"]) >= 2
        assert a["preview_image_url"].startswith("file://")
    assert len({a["avatar_id"] for a in avatars}) == len(avatars)


def test_avatars_poses_json_shape_and_previews() -> None:
    avatars = run_cli("avatars", "list", "--json").json()
    seen = set()
    for a in avatars:
        r = run_cli("avatars", "poses", a["avatar_id"], "--json")
        assert r.code == 0, r.stderr
        poses = r.json()
        assert [p["pose_id"] for p in poses] == a["pose_ids"]
        for p in poses:
            assert {"pose_id", "avatar_id", "name", "width", "height", "fps", "preview_image_url"} <= set(p)
            assert p["avatar_id"] == a["avatar_id"] and p["fps"] == 25
            assert p["width"] > 0 and p["height"] > 0 and p["width"] % 2 == 0 and p["height"] % 2 == 0
            seen.add(p["pose_id"])
            png = Path(p["preview_image_url"].removeprefix("file://"))
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            img = decode_frames(png, "rgba")[0]
            assert img.shape == (p["height"], p["width"], 4)
            alpha = img[..., 3]
            assert alpha.min() == 0 and alpha.max() == 255  # transparent background, opaque avatar
    assert len(seen) >= 6


def test_avatars_table_for_people() -> None:
    r = run_cli("avatars", "list")
    assert r.code == 0
    assert "AVATAR" in r.stdout and "ava" in r.stdout


def test_unknown_avatar_suggests_close_match() -> None:
    r = run_cli("avatars", "poses", "avva")
    assert r.code == ExitCode.NOT_FOUND
    assert "unknown avatar 'avva'" in r.stderr and "'ava'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_unknown_video_is_not_found() -> None:
    r = run_cli("video", "get", "vid_nope", "--json")
    assert r.code == ExitCode.NOT_FOUND and "unknown video" in r.stderr and r.stdout == ""


def test_empty_history_lists_nothing() -> None:
    r = run_cli("video", "list", "--json")
    assert r.code == 0 and r.json() == []


def test_usage_error_is_one_line_exit_2() -> None:
    r = run_cli("generate", "--audio", "x.wav")
    assert r.code == ExitCode.USAGE
    assert "--pose" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cuda_that_cannot_load_is_a_clear_error(tmp_path: Path) -> None:
    import pytest

    from a2v_cli.engine.lipsync import ARTICULATOR_FILE, model_dir
    from a2v_cli.engine.sessions import load_session
    from a2v_cli.errors import UnavailableError

    try:
        load_session(str(model_dir() / ARTICULATOR_FILE), "cuda")
    except UnavailableError:
        pass
    else:
        pytest.skip("CUDA really works here; the error path is for machines without a usable GPU")
    r = run_cli("generate", "--pose", "ava-front", "--audio", str(Path(__file__).parent / "fixtures/speech_en.wav"),
                "--device", "cuda")
    assert r.code == ExitCode.UNAVAILABLE and "CUDA" in r.stderr and "--device cpu" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert run_cli("video", "list", "--json").json() == []  # a missing GPU is not a failed video
    auto = run_cli("generate", "--pose", "ava-front", "--audio", str(Path(__file__).parent / "fixtures/speech_en.wav"),
                   "--device", "auto", "--json")
    assert auto.code == 0, auto.stderr  # auto falls back to the CPU cleanly


def test_json_mode_errors_are_json_on_stderr() -> None:
    import json

    r = run_cli("avatars", "poses", "avva", "--json")
    assert r.code == ExitCode.NOT_FOUND and r.stdout == ""
    err = json.loads(r.stderr)
    assert err["exit_code"] == 4 and "unknown avatar" in err["error"] and "'ava'" in err["hint"]
