"""Ids that `a2v avatars add` makes up from the file name never fail, however many adds run at once.

Why: the id came from `ingest.free_id` (is `astronaut` free? then `astronaut-2`...) long before the bundle was
renamed into place, so a second add of the same photo that chose its id before the first one published
failed with "avatar 'astronaut' already exists" for an id the user never asked for. The rename is the
point of truth now: a generated id that was taken meanwhile becomes the next free one; an explicit `--id`
that was taken meanwhile still fails (exit 2, nothing left). Real CLI processes, the shipped photo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import ROOT, one_error_line, run_cli

ASTRONAUT = ROOT / "examples" / "astronaut.png"


def home() -> Path:
    return Path(os.environ["A2V_HOME"])


def start_add(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "a2v_cli", "avatars", "add", "--image", str(ASTRONAUT), "--size", "256", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def check_bundle(avatar_id: str) -> dict:
    """The bundle in ``avatars/<id>`` names itself and its pose by that id, and its files are where it says."""
    folder = home() / "avatars" / avatar_id
    manifest = json.loads((folder / "avatar.json").read_text())
    assert manifest["avatar_id"] == avatar_id, manifest
    (pose,) = manifest["poses"]
    assert pose["pose_id"] == f"{avatar_id}-photo", pose
    for key in ("image", "matte", "landmarks"):
        assert pose[key].startswith(f"{avatar_id}-photo/") and (folder / pose[key]).is_file(), pose
    return manifest


def test_concurrent_adds_of_one_photo_all_succeed_with_distinct_ids() -> None:
    procs = [start_add("--json") for _ in range(4)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e.decode()[-2000:] for _, e in outs]
    ids = [json.loads(o)["avatar_id"] for o, _ in outs]
    assert sorted(ids) == ["astronaut", "astronaut-2", "astronaut-3", "astronaut-4"], ids
    for o, _ in outs:  # each process printed the avatar it made, under the id it ended up with
        printed = json.loads(o)
        assert printed["pose_ids"] == [f"{printed['avatar_id']}-photo"], printed
        check_bundle(printed["avatar_id"])
    assert not (home() / ".avatars-staging").exists()
    listed = run_cli("avatars", "list", "--json")
    assert listed.code == 0 and set(ids) <= {a["avatar_id"] for a in listed.json()}, listed.stdout  # type: ignore[union-attr]


def take_id_while_it_builds(avatar_id: str, bundle: Path) -> threading.Thread:
    """As soon as an add stages ``avatar_id`` (it has chosen that id), put ``bundle`` there first."""
    staging, dest = home() / ".avatars-staging", home() / "avatars" / avatar_id

    def interlope() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if any(p.name.startswith(f"{avatar_id}.") for p in staging.iterdir()):
                    shutil.copytree(bundle, dest)
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.001)

    thread = threading.Thread(target=interlope, daemon=True)
    thread.start()
    return thread


def test_a_generated_id_taken_while_the_add_runs_becomes_the_next_free_one(tmp_path: Path) -> None:
    first = run_cli("avatars", "add", "--image", str(ASTRONAUT), "--size", "256", "--id", "other", "--json")
    assert first.code == 0, first.stderr
    theirs = tmp_path / "theirs"
    shutil.copytree(home() / "avatars" / "other", theirs)
    (theirs / "marker").write_text("not yours")
    thread = take_id_while_it_builds("astronaut", theirs)
    proc = start_add("--json")
    out, errs = proc.communicate(timeout=300)
    thread.join(5)
    assert (home() / "avatars" / "astronaut" / "marker").read_text() == "not yours"  # the race did happen
    assert proc.returncode == 0, errs.decode()
    made = json.loads(out)
    assert made["avatar_id"] == "astronaut-2" and made["pose_ids"] == ["astronaut-2-photo"], made
    assert made["name"] == "Astronaut 2", made  # the name made from the id follows it
    assert check_bundle("astronaut-2")["name"] == "Astronaut 2"
    assert not (home() / ".avatars-staging").exists()


def test_an_explicit_id_taken_while_the_add_runs_still_fails(tmp_path: Path) -> None:
    first = run_cli("avatars", "add", "--image", str(ASTRONAUT), "--size", "256", "--id", "other")
    assert first.code == 0, first.stderr
    theirs = tmp_path / "theirs"
    shutil.copytree(home() / "avatars" / "other", theirs)
    (theirs / "marker").write_text("not yours")
    thread = take_id_while_it_builds("me", theirs)
    proc = start_add("--id", "me")
    out, errs = proc.communicate(timeout=300)
    thread.join(5)
    assert proc.returncode == 2 and out == b"", errs.decode()
    one_error_line(errs.decode(), "avatar 'me' already exists")
    assert (home() / "avatars" / "me" / "marker").read_text() == "not yours"  # never overwritten
    assert sorted(p.name for p in (home() / "avatars").iterdir()) == ["me", "other"]
    assert not (home() / ".avatars-staging").exists()
