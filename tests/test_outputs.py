"""Never destroy what the user has: outputs vs inputs, concurrent renders, independent files, delete and prune.

Local mode through the real CLI; the same checks against a real `a2v serve` are in test_remote_cli.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, SPEECH, decode_frames, one_error_line, run_cli, start_long_render

from a2v_cli.errors import ExitCode

POSE = "ava-front"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def talk(isolated: Path) -> Path:
    path = isolated / "talk.wav"
    path.write_bytes(SPEECH.read_bytes())
    return path


@pytest.mark.parametrize(
    "make, args",
    [
        (None, ["-o", "talk.wav", "--force"]),
        ("symlink", ["-o", "alias.wav", "--force"]),
        ("hardlink", ["-o", "alias.wav", "--force"]),
        (None, ["-o", "v.mp4", "--mask-output", "talk.wav", "--force"]),
        ("hardlink", ["-o", "v.mp4", "--mask-output", "alias.wav"]),
    ],
    ids=["same-path", "symlink", "hard-link", "mask-is-input", "mask-hard-link-no-force"],
)
def test_an_output_is_never_an_input(talk: Path, make: str | None, args: list[str]) -> None:
    before = digest(talk)
    if make == "symlink":
        (talk.parent / "alias.wav").symlink_to(talk.name)
    elif make == "hardlink":
        os.link(talk, talk.parent / "alias.wav")
    r = run_cli("generate", "-p", POSE, "-a", "talk.wav", *args)
    assert r.code == ExitCode.USAGE, r.stderr
    one_error_line(r.stderr, "same file", "talk.wav")
    assert digest(talk) == before
    assert not list(talk.parent.glob("*.mp4")) and not list(talk.parent.glob(".*.part"))


def test_stdin_file_is_an_input_too(talk: Path) -> None:
    before = digest(talk)
    with open(talk, "rb") as stdin:
        proc = subprocess.run(
            [sys.executable, "-m", "a2v_cli", "generate", "-p", POSE, "-a", "-", "-o", "talk.wav", "--force"],
            stdin=stdin, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
        )
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    one_error_line(proc.stderr, "same file", "stdin")
    assert digest(talk) == before


def test_cues_output_is_never_its_input(talk: Path) -> None:
    before = digest(talk)
    os.link(talk, talk.parent / "alias.wav")
    for target in ("talk.wav", "alias.wav"):
        r = run_cli("cues", "talk.wav", "-o", target, "--force")
        assert r.code == ExitCode.USAGE, r.stderr
        one_error_line(r.stderr, "same file")
    assert digest(talk) == before


def test_two_outputs_may_not_be_one_file(talk: Path) -> None:
    (talk.parent / "q-link.mp4").symlink_to("q.mp4")
    for args in (["-o", "q.mp4", "--mask-output", "q.mp4"], ["-o", "q.mp4", "--mask-output", "q-link.mp4", "-f"]):
        r = run_cli("generate", "-p", POSE, "-a", "talk.wav", *args)
        assert r.code == ExitCode.USAGE, r.stderr
        one_error_line(r.stderr, "same file")
    assert not (talk.parent / "q.mp4").exists()


def test_directory_output_is_refused_before_names_are_derived(talk: Path) -> None:
    for args in (["-o", "."], ["-o", str(talk.parent)], ["--mask-output", "."]):
        r = run_cli("generate", "-p", POSE, "-a", "talk.wav", *args)
        assert r.code == ExitCode.USAGE, r.stderr
        one_error_line(r.stderr, "is a directory")


MISLEADING_NAMES = [
    (["-o", "out.webm"], ["out.webm", "MP4", "out.mp4", "--alpha-format webm"]),
    (["-o", "clip.MKV"], ["clip.MKV", "MP4"]),
    (["-o", "v.mp4", "--mask-output", "mask.gif"], ["--mask-output", "mask.gif", "mask.mp4"]),
    (["-o", "-"], ["-o -", "stdout"]),
    (["-o", "v.mp4", "--mask-output", "-"], ["--mask-output -", "stdout"]),
    (["-o", "new/"], ["new/", "directory", "-o new/out.mp4"]),
    (["-o", "new/."], ["new/.", "directory"]),
]
MISLEADING_IDS = ["webm", "mkv-capitals", "mask-gif", "stdout", "mask-stdout", "missing-dir-slash", "missing-dir-dot"]


@pytest.mark.parametrize("args, words", MISLEADING_NAMES, ids=MISLEADING_IDS)
def test_an_output_name_that_would_mislead_is_refused(talk: Path, args: list[str], words: list[str]) -> None:
    """Each of these used to exit 0: an MP4 named .webm/.mkv/.gif (players go by the extension), a file named
    `-` for `-o -`, a file named `new` for `-o new/`. Now exit 2 before anything renders."""
    r = run_cli("generate", "-p", POSE, "-a", "talk.wav", *args)
    assert r.code == ExitCode.USAGE, r.stderr
    one_error_line(r.stderr, *words)
    assert sorted(p.name for p in talk.parent.iterdir()) == ["talk.wav"]
    assert run_cli("video", "list", "--json").json() == []  # refused before the render


def test_mp4_names_in_any_case_and_no_extension_are_written(talk: Path) -> None:
    r = run_cli("generate", "-p", POSE, "-a", "talk.wav", "-o", "Take 1.MOV", "--mask-output", "matte")
    assert r.code == 0, r.stderr
    assert len(decode_frames(talk.parent / "Take 1.MOV")) == len(decode_frames(talk.parent / "matte")) > 0


def test_cues_output_dash_is_stdout(talk: Path) -> None:
    r = run_cli("cues", "talk.wav", "-o", "-")
    assert r.code == 0, r.stderr
    assert r.stdout == run_cli("cues", "talk.wav").stdout and r.stdout.count("\t") > 5
    assert not (talk.parent / "-").exists()
    bad = run_cli("cues", "talk.wav", "-o", "new/")
    assert bad.code == ExitCode.USAGE
    one_error_line(bad.stderr, "new/", "directory")
    assert not (talk.parent / "new").exists()


def test_output_that_appears_during_the_render_is_kept(isolated: Path) -> None:
    """The check before the render is not enough: the final placement itself must be exclusive."""
    proc = start_long_render(isolated, POSE, "race.mp4")
    (isolated / "race.mp4").write_bytes(b"the other run's video")
    (isolated / "race.mask.mp4").write_bytes(b"the other run's mask")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == ExitCode.USAGE, err.decode()
    one_error_line(err.decode(), "race.mp4", "appeared")
    assert (isolated / "race.mp4").read_bytes() == b"the other run's video"
    assert (isolated / "race.mask.mp4").read_bytes() == b"the other run's mask"
    assert not list(isolated.glob(".*.part"))


def test_two_renders_to_one_output_one_wins(talk: Path) -> None:
    cmd = [sys.executable, "-m", "a2v_cli", "generate", "-p", POSE, "-a", "talk.wav", "-o", "same.mp4"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert sorted(p.returncode for p in procs) == [0, ExitCode.USAGE], errs
    assert len(decode_frames(talk.parent / "same.mp4")) == 110


def test_output_is_independent_of_the_history_copy(talk: Path) -> None:
    r = run_cli("generate", "-p", POSE, "-a", "talk.wav", "-o", "mine.mp4", "--json")
    assert r.code == 0, r.stderr
    video = r.json()
    kept = Path(video["video_url"].removeprefix("file://"))
    mine = talk.parent / "mine.mp4"
    assert kept.is_file() and mine.stat().st_nlink == 1 and mine.stat().st_ino != kept.stat().st_ino
    kept_before = digest(kept)
    with open(mine, "r+b") as f:  # the user edits their file in place
        f.write(b"\0" * 64)
    assert digest(kept) == kept_before
    # video download gives an independent copy too
    (talk.parent / "dl").mkdir()
    d = run_cli("video", "download", video["video_id"], "-o", "dl")
    assert d.code == 0, d.stderr
    got = talk.parent / "dl" / f"{video['video_id']}.mp4"
    assert got.stat().st_ino != kept.stat().st_ino and digest(got) == kept_before


def test_video_delete_and_prune(talk: Path) -> None:
    ids = []
    for name in ("a.mp4", "b.mp4"):
        r = run_cli("generate", "-p", POSE, "-a", "talk.wav", "-o", name, "--json")
        assert r.code == 0, r.stderr
        ids.append(r.json()["video_id"])
    home = Path(os.environ["A2V_HOME"])
    d = run_cli("video", "delete", ids[0], "--json")
    assert d.code == 0, d.stderr
    assert d.json() == {"video_id": ids[0], "deleted": True}
    assert not (home / "videos" / ids[0]).exists() and (talk.parent / "a.mp4").is_file()
    again = run_cli("video", "delete", ids[0], "--json")  # a repeat is harmless
    assert again.code == 0 and again.json() == {"video_id": ids[0], "deleted": False}
    assert run_cli("video", "get", ids[0]).code == ExitCode.NOT_FOUND
    assert run_cli("video", "delete", "vid_00000000000000000000").code == ExitCode.NOT_FOUND
    listed = [v["video_id"] for v in run_cli("video", "list", "--json").json()]
    assert listed == [ids[1]]
    keep = run_cli("video", "prune", "--older-than", "30d", "--json")
    assert keep.code == 0 and keep.json() == {"deleted": [], "count": 0}
    gone = run_cli("video", "prune", "--older-than", "0s", "--json")
    assert gone.code == 0 and gone.json() == {"deleted": [ids[1]], "count": 1}
    assert not (home / "videos" / ids[1]).exists() and run_cli("video", "list", "--json").json() == []
    bad = run_cli("video", "prune", "--older-than", "soon")
    assert bad.code == ExitCode.USAGE
    one_error_line(bad.stderr, "not a duration")
    json.loads(run_cli("video", "prune", "--older-than", "1w2d", "--json").stdout)


def test_history_is_never_an_output(talk: Path) -> None:
    r = run_cli("generate", "-p", POSE, "-a", "talk.wav", "--json")
    assert r.code == 0, r.stderr
    home = Path(os.environ["A2V_HOME"])
    db = (home / "a2v.db").read_bytes()
    kept = Path(r.json()["video_url"].removeprefix("file://"))
    kept_bytes = kept.read_bytes()
    for target in (home / "a2v.db", kept, home / "videos" / "new.mp4"):
        for cmd in (["generate", "-p", POSE, "-a", "talk.wav", "-o", str(target), "--force"],
                    ["cues", "talk.wav", "-o", str(target), "--force"]):
            bad = run_cli(*cmd)
            assert bad.code == ExitCode.USAGE, bad.stderr
            one_error_line(bad.stderr, "a2v's own data")
    assert (home / "a2v.db").read_bytes() == db and kept.read_bytes() == kept_bytes
    assert not (home / "videos" / "new.mp4").exists()


def test_avatar_bundles_and_user_models_are_never_an_output(talk: Path) -> None:
    """`-o` into `$A2V_HOME/avatars/` (the pose being rendered is read from there) or `models/` used to replace
    the avatar's own files with the video, after which the avatar was skipped as unreadable."""
    added = run_cli("avatars", "add", "--image", str(ROOT / "examples" / "astronaut.png"), "--id", "me")
    assert added.code == 0, added.stderr
    home = Path(os.environ["A2V_HOME"])
    bundle = home / "avatars" / "me"
    before = {p: digest(p) for p in bundle.rglob("*") if p.is_file()}
    (home / "models").mkdir(exist_ok=True)
    targets = (bundle / "avatar.json", bundle / "me-photo" / "image.png", bundle / "new.mp4",
               home / ".avatars-staging" / "x.mp4", home / "models" / "out.mp4")
    for target in targets:
        for cmd in (["generate", "-p", "me-photo", "-a", "talk.wav", "-o", str(target), "--force"],
                    ["cues", "talk.wav", "-o", str(target), "--force"]):
            bad = run_cli(*cmd)
            assert bad.code == ExitCode.USAGE, (target, bad.stderr)
            one_error_line(bad.stderr, "a2v's own data", str(home))
    bad = run_cli("generate", "-p", "me-photo", "-a", "talk.wav", "-o", "ok.mp4", "--mask-output",
                  str(bundle / "preview.png"), "--force")
    assert bad.code == ExitCode.USAGE, bad.stderr
    assert {p: digest(p) for p in bundle.rglob("*") if p.is_file()} == before
    assert not (home / "models" / "out.mp4").exists()
    listed = run_cli("avatars", "list", "--json")
    assert listed.code == 0 and "skipping" not in listed.stderr, listed.stderr
    assert "me" in [a["avatar_id"] for a in listed.json()]
