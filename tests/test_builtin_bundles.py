"""The built-in avatars as package bundles: fresh (what engine/art.py draws), loaded exactly, never shadowed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import ROOT, decode_frames, load_script, run_cli

from a2v_cli.engine import art, catalog, drawn
from a2v_cli.engine.avatars import BUILTIN_DIR

REBUILD = "run python scripts/build_assets.py"
# numpy's float32 transcendentals take other SIMD paths on other CPUs (AVX-512 against AVX2): the same drawing code
# gives layers a few ULPs apart (up to 6.4e-5 here, on a few hundred of a million values). A change to a drawing is
# levels (1 / 255 = 3.9e-3) on many pixels; this tolerance is a twentieth of a level
DRAW_ATOL = 2e-4


def same_drawing(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal for uint8 arrays; for float32 ones within DRAW_ATOL (one CPU's rounding against another's)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == np.uint8:
        return np.array_equal(a, b)
    return bool(np.allclose(a, b, rtol=0, atol=DRAW_ATOL))


def test_shipped_bundles_match_the_drawing_code(tmp_path: Path) -> None:
    """Regenerating the bundles gives the shipped manifests, layer arrays (to DRAW_ATOL) and previews (else: rebuild
    them)."""
    fresh = tmp_path / "avatars"
    load_script("scripts/build_assets.py").build(fresh)  # type: ignore[attr-defined]
    shipped_ids = sorted(p.name for p in BUILTIN_DIR.iterdir() if p.is_dir())
    assert shipped_ids == sorted(p.name for p in fresh.iterdir()) == sorted(art.AVATARS), REBUILD
    for avatar_id in shipped_ids:
        shipped, built = BUILTIN_DIR / avatar_id, fresh / avatar_id
        manifest = json.loads((shipped / "avatar.json").read_text())
        stale = f"{avatar_id}/avatar.json is stale: {REBUILD}"
        assert manifest == json.loads((built / "avatar.json").read_text()), stale
        for pose in manifest["poses"]:
            old, new = drawn.read_layers(shipped / pose["layers"]), drawn.read_layers(built / pose["layers"])
            assert list(old) == list(new), f"{pose['layers']} is stale: {REBUILD}"
            for name in old:
                assert same_drawing(old[name], new[name]), f"{pose['layers']}: {name} is stale: {REBUILD}"
            png = [decode_frames(root / pose["preview"], "rgba") for root in (shipped, built)]
            assert np.array_equal(*png), f"{pose['preview']} is stale: {REBUILD}"


def test_a_pose_loads_bit_for_bit_what_the_bundle_holds_and_what_the_code_draws() -> None:
    """The loader gives back the bundle's arrays exactly (float32 bits) and the drawn PoseArt (blink sprites, anchors,
    mouth style; the arrays to DRAW_ATOL, as drawn on this CPU)."""
    assert catalog.pose_ids(include_user=False) == list(art.POSES)
    for pose_id in art.POSES:
        drawn_art, loaded = art.draw_pose(pose_id), catalog.pose_art(pose_id)
        assert loaded.info == drawn_art.info and loaded.mouth_style == drawn_art.mouth_style
        assert loaded.head_origin == drawn_art.head_origin and loaded.mouth_center == drawn_art.mouth_center
        assert list(loaded.heads) == list(drawn_art.heads) == [0.0, 0.5, 1.0]
        entry = catalog.pose_entry(pose_id)
        stored = drawn.read_layers(entry.file("layers"))
        for a, b, name in [(loaded.background, drawn_art.background, "background"),
                           (loaded.body, drawn_art.body, "body"),
                           *((loaded.heads[k], drawn_art.heads[k], f"head_{k}") for k in loaded.heads)]:  # fmt: skip
            assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
            assert same_drawing(a, b), (pose_id, name)
            if name in ("body", "head_0.0"):  # stored whole (the other heads are patches on the open one)
                assert np.array_equal(a.view(np.int32), stored[name].view(np.int32)), (pose_id, name)
        assert not np.array_equal(loaded.heads[0.0], loaded.heads[1.0])  # the blink sprites are really there


def test_rendering_a_builtin_pose_never_imports_the_drawing_code() -> None:
    code = ("import sys; from a2v_cli.engine.frames import open_source; from a2v_cli.engine import catalog; "
            "src = open_source('mika-side', 25); rgb, mask, _, _ = src.compose(range(3)); catalog.preview_files(); "
            "assert rgb.shape == (3, 512, 512, 3) and mask.max() == 255; "
            "print('a2v_cli.engine.art' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
    listed = subprocess.run([sys.executable, "-c", "import sys; from a2v_cli.engine import catalog; catalog.avatars();"
                             " print(sorted(m for m in ('numpy', 'a2v_cli.engine.art') if m in sys.modules))"],
                            capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stderr  # listing reads JSON only


def test_user_bundles_can_neither_shadow_a_builtin_nor_bring_drawn_poses() -> None:
    avatars = Path(os.environ["A2V_HOME"]) / "avatars"
    avatars.mkdir(parents=True)
    shutil.copytree(BUILTIN_DIR / "leo", avatars / "leo")  # a complete bundle with a built-in's id
    copy = avatars / "leo2"
    shutil.copytree(BUILTIN_DIR / "leo", copy)  # a complete drawn bundle under a new id
    (copy / "leo-front").rename(copy / "leo2-front")
    manifest = json.loads((copy / "avatar.json").read_text())
    manifest["avatar_id"] = "leo2"
    manifest["poses"] = [dict(manifest["poses"][0], pose_id="leo2-front", layers="leo2-front/layers.npz",
                              preview="leo2-front/preview.png")]
    (copy / "avatar.json").write_text(json.dumps(manifest))
    listed = run_cli("avatars", "list", "--json")
    assert listed.code == 0, listed.stderr
    leo = [a for a in listed.json() if a["avatar_id"].startswith("leo")]
    assert [a["avatar_id"] for a in leo] == ["leo"] and leo[0]["preview_image_url"].startswith(
        f"file://{BUILTIN_DIR / 'leo'}")  # the package's, not the copy's
    warnings = listed.stderr.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: skipping avatar bundle") for w in warnings)
    assert any("'leo' is already taken (built-in)" in w for w in warnings)
    assert any("leo2" in w and "unknown kind 'drawn'" in w for w in warnings)
    removed = run_cli("avatars", "remove", "leo")
    assert removed.code == 2 and "built-in" in removed.stderr
    assert (BUILTIN_DIR / "leo" / "avatar.json").is_file() and (avatars / "leo" / "avatar.json").is_file()
