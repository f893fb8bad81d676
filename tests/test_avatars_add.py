"""`a2v avatars add --image` and `a2v avatars remove` through the real CLI, with the real face models.

Good photos come from the shipped astronaut portrait; every bad case is generated here with Pillow.
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from a2v_cli.errors import InputError
from tests.conftest import FIXTURES, ROOT, run_cli

ASTRONAUT = ROOT / "examples" / "astronaut.png"
CAT = FIXTURES / "cat.jpg"
HEIC = FIXTURES / "astronaut-p3.heic"  # as an iPhone stores a photo: HEVC in HEIF, its colours Display P3


def home() -> Path:
    return Path(os.environ["A2V_HOME"])


def astronaut() -> Image.Image:
    return Image.open(ASTRONAUT).convert("RGB")


def assert_nothing_left() -> None:
    """A failed add leaves no bundle and no staging folder behind."""
    avatars = home() / "avatars"
    assert not avatars.exists() or list(avatars.iterdir()) == []
    assert not (home() / ".avatars-staging").exists()


def assert_bad_input(result, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert result.code == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr  # one clear line, no traceback
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], lines[0]
    assert result.stdout == ""
    assert_nothing_left()


def bundle(avatar_id: str) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    folder = home() / "avatars" / avatar_id
    manifest = json.loads((folder / "avatar.json").read_text())
    pose = manifest["poses"][0]
    image = np.asarray(Image.open(folder / pose["image"]))
    matte = np.asarray(Image.open(folder / pose["matte"]))
    landmarks = np.load(folder / pose["landmarks"])
    return manifest, image, matte, landmarks


def neighbour_and_head(alone: str, group: str) -> tuple[np.ndarray, np.ndarray]:
    """Where the bundle of the photo with a neighbour differs from the one of the person alone (the same face: the
    same framing), and of that the part above the person's chin: the neighbour's head."""
    _, alone_image, _, marks = bundle(alone)
    _, image, _, _ = bundle(group)
    neighbour = np.abs(image.astype(int) - alone_image.astype(int)).max(axis=2) > 40
    head = neighbour.copy()
    head[round(float(marks[0, 152, 1])) :] = False
    return neighbour, head


def add(path: Path, *args: str):  # type: ignore[no-untyped-def]
    return run_cli("avatars", "add", "--image", str(path), *args)


def test_add_a_photo_writes_the_bundle(tmp_path: Path) -> None:
    result = add(ASTRONAUT, "--json")
    assert result.code == 0, result.stderr
    avatar = result.json()
    assert avatar["avatar_id"] == "astronaut" and avatar["pose_ids"] == ["astronaut-photo"]
    assert avatar["preview_image_url"].startswith("file://")
    folder = home() / "avatars" / "astronaut"
    manifest, image, matte, landmarks = bundle("astronaut")
    assert manifest["format"] == 1 and manifest["avatar_id"] == "astronaut"
    assert manifest["source"]["kind"] == "image" and manifest["source"]["file"] == "astronaut.png"
    assert (manifest["source"]["width"], manifest["source"]["height"]) == (512, 512)
    assert len(manifest["source"]["sha256"]) == 64
    pose = manifest["poses"][0]
    assert pose["pose_id"] == "astronaut-photo" and pose["kind"] == "photo" and pose["frame_count"] == 1
    assert (pose["width"], pose["height"], pose["fps"]) == (512, 512, 25)
    # the pose: a 512x512 RGB head-and-shoulders crop with the face centred a bit above the middle
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    assert matte.shape == (512, 512) and matte.dtype == np.uint8
    assert landmarks.shape == (1, 468, 3) and landmarks.dtype == np.float32
    x0, y0, x1, y1 = pose["face_box"]
    assert 0.28 < pose["face_width"] / 512 < 0.40
    assert 200 < (x0 + x1) / 2 < 312 and 150 < (y0 + y1) / 2 < 256
    lm = landmarks[0]
    for i in (33, 263, 61, 291):
        assert x0 <= lm[i, 0] <= x1 and y0 <= lm[i, 1] <= y1
    assert lm[33, 0] < lm[263, 0] and lm[61, 0] < lm[291, 0]
    mouth = pose["mouth_anchor"]
    assert lm[61, 0] < mouth[0] < lm[291, 0] and abs(mouth[1] - (lm[61, 1] + lm[291, 1]) / 2) < 10
    # the matte: person in (eyes, nose, mouth, cheeks), wall out
    inner = [1, 4, 6, 33, 133, 263, 362, 61, 291, 13, 14, 168, 197, 50, 280]
    assert matte[lm[inner, 1].round().astype(int), lm[inner, 0].round().astype(int)].min() > 240
    assert matte[460:, 180:330].mean() > 240  # shoulders / suit
    assert matte[:40, :40].mean() < 15 and matte[:40, -40:].mean() < 15
    preview = np.asarray(Image.open(folder / "preview.png"))
    assert preview.shape == (512, 512, 4) and np.array_equal(preview[..., 3], matte)
    # private: 0700 folders, 0600 files
    for path in [folder, *folder.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert not (home() / ".avatars-staging").exists()


def test_options_and_remove() -> None:
    result = add(ASTRONAUT, "--id", "eileen", "--name", "Eileen", "--description", "NASA portrait", "--size", "256")
    assert result.code == 0, result.stderr
    assert "eileen" in result.stdout and "eileen-photo" in result.stdout
    manifest, image, matte, landmarks = bundle("eileen")
    assert manifest["name"] == "Eileen" and manifest["description"] == "NASA portrait"
    assert image.shape == (256, 256, 3) and matte.shape == (256, 256)
    assert 0.28 < manifest["poses"][0]["face_width"] / 256 < 0.40
    assert landmarks[0, :, :2].max() < 256

    again = add(ASTRONAUT, "--id", "eileen")
    assert again.code == 2 and "already exists" in again.stderr
    assert (home() / "avatars" / "eileen" / "avatar.json").is_file()  # the existing avatar is untouched

    assert run_cli("avatars", "remove", "eileen").code == 0
    assert not (home() / "avatars" / "eileen").exists()
    gone = run_cli("avatars", "remove", "eileen")
    assert gone.code == 4 and "unknown avatar 'eileen'" in gone.stderr
    builtin = run_cli("avatars", "remove", "ava")
    assert builtin.code == 2 and "built-in" in builtin.stderr
    assert_nothing_left()


@pytest.mark.parametrize(("args", "words"), [
    (["--id", "ava"], ["built-in"]),
    (["--id", "Bad Id!"], ["invalid avatar id"]),
    (["--id", "me\n"], ["invalid avatar id"]),  # the check's `$` let a final newline through: a folder "me\n"
    (["--size", "100"], ["--size 100"]),
    (["--size", "513"], ["--size 513"]),
    (["--face", "2"], ["--face 2", "1 face"]),
])
def test_bad_options(args: list[str], words: list[str]) -> None:
    assert_bad_input(add(ASTRONAUT, *args), *words)


def test_no_face_in_a_cat_photo() -> None:
    assert_bad_input(add(CAT), "no face found in cat.jpg")


def test_several_faces_use_the_largest_or_the_one_asked_for(tmp_path: Path) -> None:
    img = astronaut()
    canvas = Image.new("RGB", (768 + 512, 768), (200, 200, 200))
    canvas.paste(img.transpose(Image.FLIP_LEFT_RIGHT), (0, 128))  # the smaller face is mirrored
    canvas.paste(img.resize((768, 768), Image.LANCZOS), (512, 0))
    path = tmp_path / "two.png"
    canvas.save(path)
    result = add(path, "--id", "big")
    assert result.code == 0, result.stderr
    assert "has 2 faces; using the largest" in result.stderr and "--face" in result.stderr
    second = add(path, "--id", "small", "--face", "2")
    assert second.code == 0, second.stderr
    assert "faces" not in second.stderr
    _, big, _, _ = bundle("big")
    _, small, _, _ = bundle("small")
    # the second face is the mirrored copy: its crop matches the mirrored first one better than the first one
    ref = big.astype(float)
    assert np.abs(small[:, ::-1] - ref).mean() < np.abs(small - ref).mean()


def test_a_face_found_at_two_scales_is_one_face(tmp_path: Path) -> None:
    """In a group photo the whole-image pass (faces there are too small for the short-range detector) scored a loose
    box around one face and its hair at 0.6: a third "face", and by area the largest, so its misfitted mesh drove
    the avatar (the mouth drawn on the chin, 40 px off on a 140 px face)."""
    from a2v_cli.engine import face

    canvas = Image.new("RGB", (1280, 886), (102, 152, 87))
    for scale, turn, corner in ((1.247, 22.7, (529, -72)), (1.269, 4.8, (474, 457))):
        canvas.paste(astronaut().rotate(turn, fillcolor=(0, 0, 0)).resize((round(512 * scale),) * 2, Image.LANCZOS),
                     corner)
    path = tmp_path / "group.png"
    canvas.save(path)
    result = add(path, "--id", "group")
    assert result.code == 0, result.stderr
    assert "has 2 faces; using the largest" in result.stderr, result.stderr
    _, image, _, landmarks = bundle("group")
    # the bundle's mesh is where the face mesh, refitted on the pose image itself, settles
    marks = landmarks[0]
    for _ in range(3):
        refit, _ = face._mesh(image, face._landmark_rect(marks), "cpu")
        marks = refit
    width = float(np.linalg.norm(landmarks[0, 454, :2] - landmarks[0, 234, :2]))
    assert np.abs(refit[:, :2] - landmarks[0, :, :2]).max() < 0.05 * width


def test_face_too_small(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    astronaut().resize((256, 256), Image.LANCZOS).save(path)
    assert_bad_input(add(path), "is 46 px wide (cheek to cheek); at least 64 px is needed")


def test_the_face_size_is_the_face_meshs_width(tmp_path: Path) -> None:
    """The minimum was checked on the detector's box, which is 0.9-1.2x the face's cheek-to-cheek width (up to 1.7x
    on a turned face) and moves with the scale it was found at: the astronaut at 68 % has a 67 px box around a face
    62 px wide, and was taken although its face is below the 64 px the message names. The check and its message
    are now in the mesh's terms, the width the framing enlarges."""
    path = tmp_path / "small.png"
    astronaut().resize((348, 348), Image.LANCZOS).save(path)  # cheeks 91 px at 512 -> 62 px
    assert_bad_input(add(path), "is 62 px wide (cheek to cheek); at least 64 px is needed")
    astronaut().resize((372, 372), Image.LANCZOS).save(path)  # -> 66 px: enough
    result = add(path, "--json")
    assert result.code == 0, result.stderr
    manifest, _, _, _ = bundle(result.json()["avatar_id"])
    # the crop enlarges the face by the framing's share over the checked width: under 2.7x at the minimum
    assert manifest["poses"][0]["face_width"] / 66 < 2.7


def test_face_far_off_the_frame_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "edge.png"
    astronaut().crop((205, 60, 512, 330)).save(path)  # the face's right half at the photo's left edge
    assert_bad_input(add(path), "cut off by the edge")
    path = tmp_path / "edge2.png"
    astronaut().crop((190, 0, 512, 512)).save(path)  # just one cheek cut
    assert_bad_input(add(path), "cut off by the edge")


def test_a_close_up_is_framed_inside_the_photo(tmp_path: Path) -> None:
    """A head that fills the photo (a selfie at arm's length) was framed as head and shoulders anyway: a quarter of
    the pose, under the chin and beside the head, was the photo's edge pixels smeared into streaks, and the mask
    kept the streaks under the chin as if they were the body. Now the framing tightens to stay inside the photo."""
    path = tmp_path / "closeup.jpg"
    astronaut().crop((155, 40, 295, 190)).resize((420, 450), Image.LANCZOS).save(path, quality=95)
    assert add(path, "--id", "close").code == 0
    manifest, image, _, _ = bundle("close")
    pose = manifest["poses"][0]
    assert pose["face_width"] / pose["width"] > 0.5  # tighter than head and shoulders (0.34)
    # made-up rows are the edge row smeared down (no vertical detail); the photo has detail in every row
    rows = np.abs(np.diff(image.astype(np.float32), axis=0)).mean(axis=(1, 2))
    assert rows[-64:].min() > 0.5, rows[-64:].round(2)
    cols = np.abs(np.diff(image.astype(np.float32), axis=1)).mean(axis=(0, 2))
    assert min(cols[:32].min(), cols[-32:].min()) > 0.5


def test_strong_profile_is_refused(tmp_path: Path) -> None:
    """A face squeezed to one side (nose next to one cheek), as a head turned ~45 degrees looks."""
    img = np.asarray(astronaut())
    xs = np.arange(img.shape[1], dtype=float)
    centre = 224.0
    src = np.where(xs < centre, centre - (centre - xs) * 2.5, centre + (xs - centre) / 2.5)
    path = tmp_path / "profile.png"
    Image.fromarray(img[:, np.clip(src, 0, img.shape[1] - 1).astype(int)]).save(path)
    assert_bad_input(add(path), "turned too far to the side")


def test_a_refused_largest_face_points_to_the_others(tmp_path: Path) -> None:
    """In a group photo the largest face is often someone turned away: the refusal said only 'use a photo where
    the person faces the camera', after a second stderr line about the faces, though --face 2 was the fix."""
    img = np.asarray(astronaut().resize((768, 768), Image.LANCZOS))
    xs = np.arange(img.shape[1], dtype=float)
    centre = 336.0
    src = np.where(xs < centre, centre - (centre - xs) * 2.5, centre + (xs - centre) / 2.5)
    canvas = Image.new("RGB", (768 + 512, 768), (200, 200, 200))
    canvas.paste(Image.fromarray(img[:, np.clip(src, 0, img.shape[1] - 1).astype(int)]), (512, 0))  # turned
    canvas.paste(astronaut(), (0, 128))
    path = tmp_path / "group.png"
    canvas.save(path)
    assert_bad_input(add(path), "turned too far to the side", "or pick another of the 2 faces with --face 2")
    assert add(path, "--face", "2", "--id", "front").code == 0


@pytest.mark.parametrize(
    "turn, mirror, words",
    [(90, False, "lying sideways"), (270, False, "lying sideways"), (180, False, "upside down"),
     (180, True, "upside down"), (-65, False, "animates an upright face")],
    ids=["sideways", "sideways-other-way", "upside-down", "flipped-vertically", "tilted-65"],
)
def test_a_face_that_is_not_upright_is_refused(tmp_path: Path, turn: int, mirror: bool, words: str) -> None:
    """A phone photo that lost its orientation tag became an avatar (exit 0) lying on its side, framed as if
    upright (body below the face), and an upside-down face was fitted the wrong way round by the face mesh
    (landmarks on the wrong features) or called a profile."""
    img = astronaut()
    img = img.transpose(Image.FLIP_TOP_BOTTOM) if mirror else img.rotate(turn, expand=True, fillcolor=(128, 128, 128))
    path = tmp_path / "turned.png"
    img.save(path)
    assert_bad_input(add(path), words, "upright")


def test_a_tilted_face_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tilt.png"
    astronaut().rotate(45, expand=True, fillcolor=(128, 128, 128)).save(path)
    assert add(path, "--json").code == 0


def test_16_bit_grey_png(tmp_path: Path) -> None:
    grey = np.asarray(astronaut().convert("L")).astype(np.uint16) * 257
    path = tmp_path / "grey16.png"
    Image.fromarray(grey).save(path)
    with Image.open(path) as check:
        assert check.mode == "I;16"
    result = add(path)
    assert result.code == 0, result.stderr
    _, image, _, _ = bundle("grey16")
    assert add(ASTRONAUT, "--id", "ref").code == 0
    _, ref, _, _ = bundle("ref")
    assert np.abs(image[..., 1].astype(float) - np.asarray(Image.fromarray(ref).convert("L"))).mean() < 4


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grayscale_and_cmyk_jpegs(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"photo-{mode.lower()}.jpg"
    astronaut().convert(mode).save(path, quality=95)
    result = add(path, "--id", "conv")
    assert result.code == 0, result.stderr
    _, image, _, _ = bundle("conv")
    assert image.shape == (512, 512, 3)
    assert add(ASTRONAUT, "--id", "ref").code == 0
    _, ref, _, _ = bundle("ref")
    if mode == "L":
        assert np.abs(image[..., 0].astype(int) - image[..., 2]).max() <= 2  # grey stays grey
        grey = np.asarray(Image.fromarray(ref).convert("L")).astype(float)
        assert np.abs(image[..., 0] - grey).mean() < 6
    else:
        assert np.abs(image.astype(float) - ref).mean() < 12  # the colours survive CMYK


def test_the_matte_drops_islands_away_from_the_person(tmp_path: Path) -> None:
    """Background the segmenter half takes for a person (here a small copy of the astronaut's suit in the
    backdrop; in real photos a neighbour's arm, a face on a poster) stayed in the mask as a ghostly patch beside
    the person. Only what connects to the face or leaves through the bottom edge is the person."""
    img = astronaut()
    img.paste(astronaut().resize((110, 110), Image.LANCZOS), (330, 100))
    path = tmp_path / "island.png"
    img.save(path)
    assert add(ASTRONAUT, "--id", "clean").code == 0
    assert add(path, "--id", "island").code == 0
    _, clean_image, clean_matte, marks = bundle("clean")
    _, image, matte, _ = bundle("island")
    pasted = np.abs(image.astype(int) - clean_image.astype(int)).max(axis=2) > 40  # same face: same framing
    assert pasted.sum() > 1000
    assert matte[pasted].mean() < 0.05 * 255, matte[pasted].mean()
    # the person is untouched: the face mesh's points and the body where the clean photo's matte is solid
    xs, ys = marks[0, :, 0].astype(int), marks[0, :, 1].astype(int)
    assert (matte[ys, xs].astype(int) >= clean_matte[ys, xs].astype(int) - 8).all()
    solid = clean_matte > 250
    assert (matte[solid] > 240).mean() > 0.99


def two_people(neighbour: bool, at: tuple[int, int, int] = (320, 159, 461)) -> Image.Image:
    """The astronaut in front, and (``neighbour``) a second, slightly smaller astronaut standing close behind her
    right shoulder (``at``: x, y, side), cut out of the photo by the segmenter and pasted on a plain backdrop."""
    from a2v_cli.engine import face

    cut = Image.fromarray(np.clip(face.segment_person(np.asarray(astronaut()), "cpu") * 255 + 0.5, 0, 255)
                          .astype(np.uint8))
    canvas = Image.new("RGB", (1000, 620), (90, 110, 140))
    if neighbour:
        x, y, side = at
        canvas.paste(astronaut().resize((side, side), Image.LANCZOS), (x, y), cut.resize((side, side)))
    canvas.paste(astronaut(), (150, 108), cut)
    return canvas


def test_a_neighbour_pressed_against_the_person_is_cut_out(tmp_path: Path) -> None:
    """Two people touching are one shape to the segmenter: the neighbour's head beside the person's, connected
    through their shoulders, stayed in the mask. The other faces found in the photo now claim what is nearer to
    them than to the person (each in its own face widths), but never the person's head, neck and chest, nor her
    body below the chin against a smaller face (further back: behind her)."""
    for name, neighbour in (("alone", False), ("pair", True)):
        two_people(neighbour).save(tmp_path / f"{name}.png")
    assert add(tmp_path / "alone.png", "--id", "alone").code == 0
    pair = add(tmp_path / "pair.png", "--id", "pair")
    assert pair.code == 0, pair.stderr
    assert "has 2 faces; using the largest" in pair.stderr
    _, _, alone_matte, marks = bundle("alone")
    _, _, matte, _ = bundle("pair")
    neighbour, head = neighbour_and_head("alone", "pair")
    assert head.sum() > 5000 and (matte[head] > 128).mean() < 0.01, (matte[head] > 128).mean()  # was 0.98
    assert (matte[neighbour] > 128).mean() < 0.4, (matte[neighbour] > 128).mean()  # was 0.90 (her collar stays)
    # the person is whole: her face, hair and body wherever the photo without the neighbour has them solid
    xs, ys = marks[0, :, 0].astype(int), marks[0, :, 1].astype(int)
    assert (matte[ys, xs].astype(int) >= alone_matte[ys, xs].astype(int) - 8).all()
    solid = (alone_matte > 250) & ~neighbour
    assert (matte[solid] > 240).mean() > 0.99, (matte[solid] > 240).mean()


def test_the_line_between_two_people_follows_the_hair(tmp_path: Path) -> None:
    """Where the neighbour stood closer, the line between the two was straight (each cell went to the nearer face's
    envelope): it cut the person's hair off 50 px beside her temple (1444 px of her head, a straight edge; in
    held-out group photos through a ponytail, or through the neighbour's hair, leaving a strip of it). The line now
    runs where reaching a cell through the shape costs the two faces alike, a step costing more across a change of
    colour: along the edge of her hair."""
    for name, neighbour in (("alone", False), ("pair", True)):
        two_people(neighbour, (270, 159, 461)).save(tmp_path / f"{name}.png")
    assert add(tmp_path / "alone.png", "--id", "alone").code == 0
    assert add(tmp_path / "pair.png", "--id", "pair").code == 0
    _, alone_image, alone_matte, marks = bundle("alone")
    _, image, matte, _ = bundle("pair")
    neighbour = np.abs(image.astype(int) - alone_image.astype(int)).max(axis=2) > 40
    chin = round(float(marks[0, 152, 1]))
    head = (alone_matte > 250) & ~neighbour
    head[chin:] = False  # her head and hair, where the photo without the neighbour has them solid
    lost = int((matte[head] < 128).sum())
    assert lost < 0.01 * head.sum(), (lost, int(head.sum()))  # was 1444 of 63199
    theirs = neighbour.copy()
    theirs[chin:] = False
    assert (matte[theirs] > 128).mean() < 0.1, (matte[theirs] > 128).mean()  # the neighbour's head is still cut


def in_frame_of(matte: np.ndarray, marks: np.ndarray, ref_marks: np.ndarray) -> np.ndarray:
    """``matte`` moved into the pose frame whose landmarks are ``ref_marks``: two photos of one face are framed from
    their own meshes, a scale and a shift apart (least squares over the 468 points)."""
    src, dst = marks[:, :2].astype(float), ref_marks[:, :2].astype(float)
    for _ in range(3):  # the points the two meshes place alike (a dark photo's mesh is noisier)
        sc, dc = src.mean(0), dst.mean(0)
        k = float(((src - sc) * (dst - dc)).sum() / ((src - sc) ** 2).sum())
        miss = np.linalg.norm((src - sc) * k + dc - dst, axis=1)
        src, dst = src[miss <= np.quantile(miss, 0.7)], dst[miss <= np.quantile(miss, 0.7)]
    # PIL maps each output pixel to its input: input = output / k + (sc - dc / k)
    ox, oy = sc - dc / k
    moved = Image.fromarray(matte).transform(matte.shape[::-1], Image.Transform.AFFINE,
                                             (1 / k, 0, ox, 0, 1 / k, oy), Image.Resampling.BILINEAR)
    return np.asarray(moved)


def test_an_underexposed_photo_is_matted_like_a_lit_one(tmp_path: Path) -> None:
    """In an underexposed photo the person and the background are a few levels apart in the noise, and the segmenter's
    matte drifts off the person's outline (here a halo beside the hair, a patch by the shoulder; on a dark suit
    before a dark backdrop, the suit faded). The segmenter now also sees two brightened copies (only the matte: the
    pose keeps the photo's pixels) and takes the median: the matte agrees with the lit photo's again."""
    rgb = np.asarray(astronaut()).astype(np.float32)
    noise = np.random.default_rng(1).normal(0, 3, rgb.shape)
    dark = np.clip(rgb * 0.06 + noise, 0, 255).astype(np.uint8)  # 4 stops under, with sensor noise
    Image.fromarray(dark).save(tmp_path / "dark.jpg", quality=90)
    assert add(ASTRONAUT, "--id", "lit").code == 0
    assert add(tmp_path / "dark.jpg", "--id", "dark").code == 0
    _, lit_image, lit, lit_marks = bundle("lit")
    _, image, matte, marks = bundle("dark")
    assert image.max() < 40  # the pose is the photo as it is, dark
    moved = in_frame_of(matte, marks[0], lit_marks[0]) > 128
    person = lit > 128
    iou = (moved & person).sum() / (moved | person).sum()
    assert iou > 0.945, iou  # 0.930 before, 0.955 now (0.941 -> 0.969 framed alike: the meshes differ a little)
    # a lit photo (its highlights near white) is segmented as it is, alone
    from a2v_cli.engine import face, ingest

    probability, guide = ingest.segment_exposed(lit_image, "cpu")
    assert guide is lit_image and np.array_equal(probability, face.segment_person(lit_image, "cpu"))


def test_png_alpha_is_the_matte(tmp_path: Path) -> None:
    img = astronaut().convert("RGBA")
    alpha = np.zeros((512, 512), np.uint8)
    yy, xx = np.mgrid[:512, :512]
    alpha[((xx - 230) / 150) ** 2 + ((yy - 300) / 260) ** 2 < 1] = 255  # an ellipse: clearly not a segmentation
    img.putalpha(Image.fromarray(alpha))
    path = tmp_path / "cutout.png"
    img.save(path)
    result = add(path)
    assert result.code == 0, result.stderr
    _, image, matte, _ = bundle("cutout")
    assert image.shape == (512, 512, 3)
    values, counts = np.unique(matte, return_counts=True)
    assert counts[(values > 10) & (values < 245)].sum() < 0.05 * matte.size  # a hard-edged ellipse, as given
    assert matte[256, 256] == 255 and matte[5, 5] == 0 and matte[5, -5] == 0


def test_png_alpha_of_several_people_keeps_only_the_person(tmp_path: Path) -> None:
    """A cut-out of a group (the PNG's own alpha round everyone) kept every neighbour in the mask; the other faces
    now claim theirs from it as from a photo without alpha, and the person keeps the alpha as given."""
    two_people(False).save(tmp_path / "alone.png")
    assert add(tmp_path / "alone.png", "--id", "alone").code == 0
    img = two_people(True).convert("RGBA")
    alpha = np.full((img.height, img.width), 255, np.uint8)
    alpha[:30], alpha[:, :10], alpha[:, -10:] = 0, 0, 0  # everyone cut out from a border
    img.putalpha(Image.fromarray(alpha))
    img.save(tmp_path / "group.png")
    result = add(tmp_path / "group.png", "--id", "group")
    assert result.code == 0, result.stderr
    assert "has 2 faces; using the largest" in result.stderr
    _, _, _, marks = bundle("alone")
    _, _, matte, _ = bundle("group")
    _, head = neighbour_and_head("alone", "group")
    assert head.sum() > 5000 and (matte[head] > 128).mean() < 0.03, (matte[head] > 128).mean()  # was 1.0
    xs, ys = marks[0, :, 0].astype(int), marks[0, :, 1].astype(int)
    assert (matte[ys, xs] == 255).all()  # the person: the alpha as given


@pytest.mark.parametrize("alpha", ["clear", "faint", "hole-over-face"])
def test_png_alpha_that_hides_the_face_is_refused(tmp_path: Path, alpha: str) -> None:
    """The photo's alpha becomes the mask: a PNG saved fully transparent (or faint, or with a hole over the face)
    used to make an avatar whose mask hid the person (mask all black), with exit 0."""
    rgb = np.asarray(astronaut())
    a = np.full(rgb.shape[:2], {"clear": 0, "faint": 10, "hole-over-face": 255}[alpha], np.uint8)
    if alpha == "hole-over-face":
        a[150:350, 150:350] = 0
    path = tmp_path / "cutout.png"
    Image.fromarray(np.dstack([rgb, a])).save(path)
    assert_bad_input(add(path), "cutout.png is transparent", "opaque")


def _p3_numbers(img: Image.Image) -> tuple[Image.Image, bytes]:
    """``img`` as a phone stores it: the same colours as Display P3 numbers, and the profile that says so."""
    from PIL import ImageCms

    from tests.icc import DISPLAY_P3, rgb_profile

    p3 = rgb_profile(DISPLAY_P3, "Display P3")
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    out = ImageCms.profileToProfile(img, srgb, ImageCms.ImageCmsProfile(io.BytesIO(p3)), 1, img.mode)
    return out, p3


def test_a_display_p3_photo_keeps_its_colours(tmp_path: Path) -> None:
    """An iPhone JPEG's numbers are Display P3: read as sRGB they would be duller; its profile is applied."""
    from a2v_cli.engine.photo import load_photo

    numbers, p3 = _p3_numbers(astronaut())
    tagged, untagged, srgb = tmp_path / "iphone.jpg", tmp_path / "untagged.jpg", tmp_path / "srgb.jpg"
    numbers.save(tagged, quality=95, icc_profile=p3)
    numbers.save(untagged, quality=95)
    astronaut().save(srgb, quality=95)
    ref, p3_rgb, raw = (load_photo(p).rgb.astype(float) for p in (srgb, tagged, untagged))
    err_p3, err_raw = np.abs(p3_rgb - ref).mean(), np.abs(raw - ref).mean()
    assert err_p3 < 1.6 and err_raw > 2.5 * err_p3, (err_p3, err_raw)  # 8-bit P3 numbers and JPEG cost ~1 level

    def saturation(a: np.ndarray) -> float:
        return float((a.max(axis=2).astype(float) - a.min(axis=2)).mean())

    for path, avatar_id in ((tagged, "p3"), (untagged, "raw"), (srgb, "ref")):
        assert add(path, "--id", avatar_id).code == 0
    sat = {avatar_id: saturation(bundle(avatar_id)[1]) for avatar_id in ("p3", "raw", "ref")}
    assert abs(sat["p3"] - sat["ref"]) < 1.5 and sat["raw"] < sat["ref"] - 4, sat


def test_a_heic_photo_from_a_phone(tmp_path: Path) -> None:
    """An iPhone's default format: read through the bundled ffmpeg, its Display P3 profile applied from its boxes."""
    from a2v_cli.engine import heif
    from a2v_cli.engine.photo import load_photo

    photo = load_photo(HEIC)
    assert photo.format == "HEIC" and (photo.width, photo.height) == (512, 512) and photo.alpha is None
    ref = np.asarray(astronaut()).astype(float)
    assert np.abs(photo.rgb - ref).mean() < 2.5  # HEVC at quality 75, and P3 numbers back to sRGB

    def saturation(a: np.ndarray) -> float:
        return float((a.max(axis=2).astype(float) - a.min(axis=2)).mean())

    assert abs(saturation(photo.rgb) - saturation(ref)) < 1.0  # read as sRGB numbers it would be 8 lower
    icc = heif.icc_profile(HEIC)
    assert icc is not None and b"Display P3" in icc
    result = add(HEIC, "--id", "phone", "--json")
    assert result.code == 0, result.stderr
    manifest, image, matte, landmarks = bundle("phone")
    assert image.shape == (512, 512, 3) and matte.max() == 255 and landmarks.shape == (1, 468, 3)
    assert (manifest["source"]["width"], manifest["source"]["height"]) == (512, 512)


def test_which_image_of_a_heif_is_read() -> None:
    """The listing's default image: a phone's tile grid (the photo) rather than its thumbnail or depth map, turned
    by its display matrix; else the first image."""
    from a2v_cli.engine.heif import Probe, parse_probe

    grid = """  Stream group #0:0[0x31]: Tile Grid: hevc (Main Still Picture), yuvj420p(pc), 4032x3024 (default)
      Display Matrix: rotation of -90.00 degrees
  Stream #0:48[0x32]: Video: hevc (Main Still Picture) (hvc1 / 0x31637668), yuvj420p(pc), 320x240, 1 fps, 1 tbr, 1 tbn
      Display Matrix: rotation of -90.00 degrees
  Stream #0:49[0x36]: Video: hevc (Rext) (hvc1 / 0x31637668), gray(pc), 768x576, 1 fps, 1 tbr, 1 tbn"""
    assert parse_probe(grid, "x.heic") == Probe(3024, 4032, "0:g:0")
    single = "  Stream #0:0[0x1]: Video: hevc (Main Still Picture) (hvc1 / 0x31637668), yuvj420p(pc), 64x48, 1 fps"
    assert parse_probe(single, "x.heic") == Probe(64, 48, "0:0")
    with pytest.raises(InputError, match="without an image"):
        parse_probe("Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'x.heic':", "x.heic")


def test_a_png_cut_out_with_a_profile_keeps_its_alpha_and_a_damaged_profile_is_ignored(tmp_path: Path) -> None:
    from a2v_cli.engine.photo import load_photo

    rgba = astronaut().convert("RGBA")
    alpha = np.zeros((512, 512), np.uint8)
    alpha[40:, 60:460] = 255
    rgba.putalpha(Image.fromarray(alpha))
    numbers, p3 = _p3_numbers(rgba)
    path = tmp_path / "cutout.png"
    numbers.save(path, icc_profile=p3)
    photo = load_photo(path)
    assert photo.alpha is not None and np.array_equal(photo.alpha, alpha)
    assert np.abs(photo.rgb.astype(float) - np.asarray(astronaut())).mean() < 1.5
    damaged = tmp_path / "damaged.jpg"
    astronaut().save(damaged, quality=95, icc_profile=b"\x00\x00\x01\x00not a profile" * 8)
    plain = tmp_path / "plain.jpg"
    astronaut().save(plain, quality=95)
    assert np.array_equal(load_photo(damaged).rgb, load_photo(plain).rgb)


def test_webp_and_exif_orientation(tmp_path: Path) -> None:
    upright = astronaut().crop((0, 0, 512, 400))
    webp = tmp_path / "photo.webp"
    upright.save(webp, quality=95)
    assert add(webp, "--id", "webp").code == 0
    # a phone photo: pixels stored turned, EXIF orientation 6 says "turn 90 degrees clockwise to show"
    turned = upright.transpose(Image.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    turned.save(path, quality=95, exif=exif)
    result = add(path, "--id", "phone")
    assert result.code == 0, result.stderr
    manifest, image, _, landmarks = bundle("phone")
    assert (manifest["source"]["width"], manifest["source"]["height"]) == (512, 400)
    _, ref, _, ref_lm = bundle("webp")
    assert np.abs(image.astype(float) - ref).mean() < 10
    assert np.abs(landmarks[0, :, :2] - ref_lm[0, :, :2]).max() < 12


def test_a_50_megapixel_photo_is_downscaled(tmp_path: Path) -> None:
    canvas = Image.new("RGB", (8192, 6144), (180, 170, 160))
    canvas.paste(astronaut().resize((4096, 4096), Image.BILINEAR), (2048, 2048))
    path = tmp_path / "huge.jpg"
    canvas.save(path, quality=85)
    del canvas
    result = add(path)  # its speed is measured by benchmarks/bench_avatar_add.py, not asserted here
    assert result.code == 0, result.stderr
    manifest, image, _, _ = bundle("huge")
    assert (manifest["source"]["width"], manifest["source"]["height"]) == (8192, 6144)
    assert image.shape == (512, 512, 3)


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says width x height (a decompression bomb), with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_over_the_pixel_cap_is_refused_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(20000, 20000))
    start = time.monotonic()
    result = add(path)
    assert time.monotonic() - start < 10
    assert_bad_input(result, "20000x20000", "limit is 100 megapixels")


def test_animated_gif_is_refused(tmp_path: Path) -> None:
    frames = [astronaut(), astronaut().transpose(Image.FLIP_LEFT_RIGHT)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert_bad_input(add(path), "animated")


def test_corrupt_truncated_and_non_images(tmp_path: Path) -> None:
    buf = io.BytesIO()
    astronaut().save(buf, format="JPEG", quality=95)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert_bad_input(add(truncated), "damaged or truncated")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000))
    assert_bad_input(add(garbage), "garbage.png")
    text = tmp_path / "notes.jpg"
    text.write_text("these are not pixels\n")
    assert_bad_input(add(text), "not an image")
    assert_bad_input(add(tmp_path / "missing.jpg"), "does not exist")
    heic = tmp_path / "IMG_0001.HEIC"  # a HEIC header and nothing of an image after it
    heic.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + os.urandom(500))
    assert_bad_input(add(heic), "IMG_0001.HEIC is a HEIC/HEIF file without an image", "export the photo as JPEG")
    cut = tmp_path / "IMG_0002.HEIC"
    cut.write_bytes(HEIC.read_bytes()[:60_000])
    assert_bad_input(add(cut), "IMG_0002.HEIC is damaged or truncated")
    bmp = tmp_path / "photo.bmp"
    astronaut().save(bmp)
    assert_bad_input(add(bmp), "BMP", "JPEG, PNG or WebP")


def test_a_clip_given_as_image_points_to_video(tmp_path: Path) -> None:
    """`--image clip.mp4` said only "not an image a2v can read; use a JPEG, PNG or WebP photo"."""
    clip = write_clip(tmp_path / "me.mp4", [np.asarray(astronaut())] * 5)
    assert_bad_input(add(clip), "me.mp4 is a video", "--video me.mp4")


def test_unwritable_home(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("avatars", "add", "--image", str(ASTRONAUT), env={"A2V_HOME": str(blocker / "home")})
    assert result.code == 2 and "A2V_HOME" in result.stderr and "Traceback" not in result.stderr
    (home()).mkdir(parents=True, exist_ok=True)
    (home() / "avatars").write_text("not a folder")
    result = add(ASTRONAUT)
    assert result.code == 2 and "writable" in result.stderr and "Traceback" not in result.stderr


def test_remote_mode_checks_locally_first_and_stores_nothing_here(tmp_path: Path) -> None:
    """Remote mode goes to the server (tests/test_server_avatars.py); what needs no server is refused before
    any connection (exit 2 even with no server), and nothing lands in the local A2V_HOME either way."""
    env = {"A2V_SERVER": "http://127.0.0.1:9", "A2V_TOKEN": "t0ken"}
    result = run_cli("avatars", "add", "--image", str(ASTRONAUT), env=env)
    assert result.code == 5 and "cannot reach the server" in result.stderr, result.stderr
    for args in (("--image", str(tmp_path / "missing.png")), ("--image", str(ASTRONAUT), "--id", "Bad Id"),
                 ("--image", str(ASTRONAUT), "--id", "ava"), ("--image", str(ASTRONAUT), "--size", "100")):
        result = run_cli("avatars", "add", *args, env=env)
        assert result.code == 2 and "cannot reach" not in result.stderr, (args, result.stderr)
    assert run_cli("avatars", "remove", "x", env=env).code == 5
    assert_nothing_left()


# ----------------------------------------------------------------------------------------------------------------------
# --video
# ----------------------------------------------------------------------------------------------------------------------


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    import subprocess

    from tests.conftest import ffmpeg

    h, w = frames[0].shape[:2]
    cmd = [ffmpeg(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps),
           "-i", "pipe:0", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", str(path)]
    subprocess.run(cmd, input=b"".join(np.ascontiguousarray(f).tobytes() for f in frames), check=True)
    return path


def panning(count: int, canvas: tuple[int, int] = (480, 360)) -> tuple[list[np.ndarray], list[int]]:
    face = np.asarray(astronaut().resize((320, 320), Image.LANCZOS))
    frames, shifts = [], []
    for i in range(count):
        dx = int(40 + 30 * np.sin(i / 8))
        frame = np.full((canvas[1], canvas[0], 3), 170, np.uint8)
        frame[20:340, dx : dx + 320] = face
        frames.append(frame)
        shifts.append(dx)
    return frames, shifts


def decode_raw(path: Path, size: int, pix_fmt: str) -> np.ndarray:
    import subprocess

    from tests.conftest import ffmpeg

    raw = subprocess.run([ffmpeg(), "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1"],
                         capture_output=True, check=True).stdout
    channels = 3 if pix_fmt == "rgb24" else 1
    return np.frombuffer(raw, np.uint8).reshape(-1, size, size, channels)


def test_add_a_video_clip(tmp_path: Path) -> None:
    frames, shifts = panning(50)
    path = write_clip(tmp_path / "me.mp4", frames)
    result = run_cli("avatars", "add", "--video", str(path), "--size", "256", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["pose_ids"] == ["me-video"]
    folder = home() / "avatars" / "me"
    manifest = json.loads((folder / "avatar.json").read_text())
    pose = manifest["poses"][0]
    assert manifest["source"]["kind"] == "video" and (manifest["source"]["width"], manifest["source"]["height"]) == (
        480, 360)
    assert pose["kind"] == "video" and pose["fps"] == 25 and pose["frame_count"] == 50
    assert pose["frames"] == "me-video/frames.mkv" and pose["matte"] == "me-video/matte.mkv"
    video = decode_raw(folder / pose["frames"], 256, "rgb24")
    matte = decode_raw(folder / pose["matte"], 256, "gray")[..., 0]
    track = np.load(folder / pose["landmarks"])
    assert video.shape == (50, 256, 256, 3) and matte.shape == (50, 256, 256)
    assert track.shape == (50, 468, 3) and track.dtype == np.float32
    # the crop is fixed and the head moves in it: the tracked nose follows the pan
    nose = track[:, 1, 0]
    assert np.corrcoef(nose, shifts)[0, 1] > 0.95
    # by as many pose pixels as the source moved, times the crop's scale (face 320 px source -> face_width)
    source_face = 92 * 320 / 512  # the astronaut's cheek-to-cheek width (92 px in the 512 px photo) at 320 px
    assert 0.75 < (np.ptp(nose) / np.ptp(shifts)) / (pose["face_width"] / source_face) < 1.25
    # the matte covers the face in every frame and not the top corners
    for i in (0, 25, 49):
        inner = track[i, [1, 33, 263, 61, 291]].round().astype(int)
        assert matte[i, inner[:, 1], inner[:, 0]].min() > 200
        assert matte[i, :15, :15].mean() < 30
    for p in [folder, *folder.rglob("*")]:
        assert stat.S_IMODE(p.stat().st_mode) == (0o700 if p.is_dir() else 0o600), p
    assert not (home() / ".avatars-staging").exists()


@pytest.mark.parametrize("transfer", ["arib-std-b67", "smpte2084"])
def test_an_hdr_clip_keeps_its_colours(tmp_path: Path, transfer: str) -> None:
    """A phone records HLG (10-bit HEVC, BT.2020) by default: read as SDR numbers it was washed out; it is
    tone-mapped, and comes out as the same clip recorded in SDR does."""
    import subprocess

    from tests.conftest import ffmpeg

    frames, _ = panning(30)
    sdr = write_clip(tmp_path / "sdr.mp4", frames)
    hdr = tmp_path / "hdr.mov"
    tags = f"colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc:range=limited"
    cmd = [ffmpeg(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "480x360", "-r", "25",
           "-i", "pipe:0", "-vf", f"zscale=tin=iec61966-2-1:pin=bt709:min=gbr:t={transfer}:p=bt2020:m=bt2020nc:r=tv"
           ":npl=203,format=yuv420p10le", "-c:v", "libx265", "-crf", "14", "-x265-params", f"log-level=error:{tags}",
           "-colorspace", "bt2020nc", "-color_primaries", "bt2020", "-color_trc", transfer, str(hdr)]  # fmt: skip
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)
    naive = np.frombuffer(subprocess.run([ffmpeg(), "-v", "error", "-i", str(hdr), "-frames:v", "1", "-f", "rawvideo",
                                          "-pix_fmt", "rgb24", "pipe:1"], capture_output=True, check=True).stdout,
                          np.uint8).reshape(360, 480, 3)  # fmt: skip
    assert np.abs(naive.astype(float) - frames[0]).mean() > 12  # the clip really is HDR-coded
    from a2v_cli.engine import clip

    info = clip.probe_clip(hdr)
    assert info.tone_map and not clip.probe_clip(sdr).tone_map
    read = [np.array(list(clip.read_frames(p, clip.probe_clip(p), 240, 180))).astype(float) for p in (sdr, hdr)]
    assert len(read[0]) == len(read[1]) == 30
    assert np.abs(read[1] - read[0]).mean() < 4
    # a stream that leaves its primaries and matrix unspecified (the container says BT.2020): read all the same
    bare = tmp_path / "bare.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(hdr), "-c:v", "copy", "-bsf:v",
                    "hevc_metadata=colour_primaries=2:matrix_coefficients=2", str(bare)], check=True)  # fmt: skip
    again = np.array(list(clip.read_frames(bare, clip.probe_clip(bare), 240, 180))).astype(float)
    assert np.abs(again - read[0]).mean() < 4
    for path, avatar_id in ((sdr, "sdr"), (hdr, "hdr")):  # the bundles (each framed on its own clip's landmarks)
        result = run_cli("avatars", "add", "--video", str(path), "--id", avatar_id, "--size", "256")
        assert result.code == 0, result.stderr
    sdr_frames, hdr_frames = (decode_raw(home() / "avatars" / a / f"{a}-video" / "frames.mkv", 256, "rgb24")
                              .astype(float) for a in ("sdr", "hdr"))  # fmt: skip
    colour = [f.reshape(-1, 3).mean(axis=0) for f in (sdr_frames, hdr_frames)]
    assert np.abs(colour[0] - colour[1]).max() < 5, colour  # each crop is its own (by a pixel or two)
    saturation = [float((f.max(axis=3) - f.min(axis=3)).mean()) for f in (sdr_frames, hdr_frames)]
    assert abs(saturation[0] - saturation[1]) < 2, saturation


def write_alpha_clip(path: Path, frames: list[np.ndarray], alphas: list[np.ndarray]) -> Path:
    """A cut-out clip as an editor exports one: ProRes 4444 (.mov) or VP9 with alpha (.webm)."""
    import subprocess

    from tests.conftest import ffmpeg

    h, w = frames[0].shape[:2]
    codec = (["-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", "-crf", "20", "-b:v", "0"] if path.suffix == ".webm"
             else ["-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p10le"])  # fmt: skip
    rgba = b"".join(np.dstack([f, a]).tobytes() for f, a in zip(frames, alphas, strict=True))
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgba", "-s", f"{w}x{h}", "-r", "25",
                    "-i", "pipe:0", *codec, str(path)], input=rgba, check=True)  # fmt: skip
    return path


@pytest.mark.parametrize("suffix", [".mov", ".webm"])
def test_a_clips_own_alpha_is_the_matte(tmp_path: Path, suffix: str) -> None:
    """A cut-out clip keeps its cut-out, as a PNG does: here everything left of a hard vertical edge beside the face
    (the background there included, the shoulder right of it not), which the segmenter would never draw."""
    from a2v_cli.engine import clip

    frames, shifts = panning(30)
    alphas = []
    for dx in shifts:
        alpha = np.zeros((360, 480), np.uint8)
        alpha[:, : dx + 205] = 255  # the face spans about dx + 125 to dx + 190
        alphas.append(alpha)
    cutout = write_alpha_clip(tmp_path / f"cutout{suffix}", frames, alphas)
    info = clip.probe_clip(cutout)
    assert info.alpha and not clip.probe_clip(write_clip(tmp_path / "plain.mp4", frames)).alpha
    for path, avatar_id in ((cutout, "cut"), (tmp_path / "plain.mp4", "seg")):
        result = run_cli("avatars", "add", "--video", str(path), "--id", avatar_id, "--size", "256")
        assert result.code == 0, result.stderr
    cut, seg = (decode_raw(home() / "avatars" / a / f"{a}-video" / "matte.mkv", 256, "gray")[..., 0].astype(float)
                for a in ("cut", "seg"))  # fmt: skip
    assert cut.shape == seg.shape == (30, 256, 256)
    soft = ((cut > 12) & (cut < 243)).mean()
    assert soft < 0.04, soft  # a hard edge, not the segmenter's soft person
    assert (np.abs(cut - seg) > 128).mean() > 0.05  # and not the segmenter's matte
    track = np.load(home() / "avatars" / "cut" / "cut-video" / "landmarks.npy")
    for i in (0, 15, 29):
        inner = track[i, [1, 33, 263, 61, 291]].round().astype(int)
        assert cut[i, inner[:, 1], inner[:, 0]].min() > 240
    # the edge moves with the pan, in step with the nose
    edge = np.array([np.argmax(cut[i, 128] < 128) for i in range(30)], dtype=float)
    assert edge.min() > 128 and np.corrcoef(edge, track[:, 1, 0])[0, 1] > 0.9, edge


def test_a_clip_whose_alpha_hides_the_face_is_refused(tmp_path: Path) -> None:
    frames, _ = panning(30)
    clear = [np.zeros((360, 480), np.uint8) for _ in frames]
    gone = write_alpha_clip(tmp_path / "gone.mov", frames, clear)
    result = run_cli("avatars", "add", "--video", str(gone), "--size", "256")
    assert_bad_input(result, "the face in the first frame of gone.mov is transparent", "save the clip")


def test_an_anamorphic_clip_keeps_the_faces_shape(tmp_path: Path) -> None:
    """HDV and DV store wide frames in narrow pixels (1440x1080 shown as 1920x1080): read as stored, the face came
    out a quarter too narrow."""
    import subprocess

    from tests.conftest import ffmpeg

    frames, _ = panning(30)
    plain = write_clip(tmp_path / "plain.mp4", frames)
    narrow = tmp_path / "narrow.mp4"  # 480x360 shown, stored as 360x360 with pixels 4:3 wide
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(plain), "-vf", "scale=360:360,setsar=4/3", "-c:v", "libx264",
                    "-crf", "16", str(narrow)], check=True)  # fmt: skip
    for path, avatar_id in ((plain, "plain"), (narrow, "narrow")):
        result = run_cli("avatars", "add", "--video", str(path), "--id", avatar_id, "--size", "256", "--json")
        assert result.code == 0, result.stderr
    manifest = json.loads((home() / "avatars" / "narrow" / "avatar.json").read_text())
    assert (manifest["source"]["width"], manifest["source"]["height"]) == (480, 360)

    def shape(avatar_id: str) -> float:  # cheek to cheek over brow to chin
        marks = np.load(home() / "avatars" / avatar_id / f"{avatar_id}-video" / "landmarks.npy")[0]
        return float(np.linalg.norm(marks[234, :2] - marks[454, :2]) / np.linalg.norm(marks[10, :2] - marks[152, :2]))

    assert abs(shape("narrow") / shape("plain") - 1) < 0.05, (shape("narrow"), shape("plain"))


def test_which_clips_are_tone_mapped() -> None:
    from a2v_cli.engine.clip import _tone_map

    line = "Stream #0:0: Video: hevc (Main 10) (hvc1 / 0x31637668), {}, 3840x2160, 25 fps"
    hlg = _tone_map(line.format("yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67, progressive)"))
    assert hlg is not None and "tin=arib-std-b67:pin=bt2020:min=bt2020nc:rin=limited" in hlg
    pq = _tone_map(line.format("yuv422p10le(pc, bt709/smpte432/smpte2084)"))  # P3-D65 PQ, full range
    assert pq is not None and "tin=smpte2084:pin=smpte432:min=bt709:rin=full" in pq
    wide = _tone_map(line.format("yuv420p10le(tv, bt2020nc/bt2020/bt2020-10)"))  # SDR in BT.2020 colours
    assert wide is not None and "tin=bt2020-10:pin=bt2020" in wide
    odd = _tone_map(line.format("yuv420p10le(tv, unknown/bt2020/weird-curve)"))  # unknowns: BT.2020's
    assert odd is not None and "tin=bt2020-10:pin=bt2020:min=bt2020nc" in odd
    for sdr in ("yuv420p(tv, bt709, progressive)", "yuv420p(progressive)", "yuvj420p(pc, bt470bg/unknown/unknown)",
                "yuv420p(tv, bt709/unknown/unknown)"):  # fmt: skip
        assert _tone_map(line.format(sdr)) is None, sdr


def test_clip_frames_are_lossless_utvideo_and_old_ffv1_bundles_still_load(tmp_path: Path) -> None:
    """A video pose's frames are UtVideo (a quarter of FFV1's encoding CPU, a fifth of its decoding, which every
    render pays for the whole clip); a bundle made before, with FFV1 frames, loads to the same pixels."""
    import subprocess

    from a2v_cli.engine import catalog
    from a2v_cli.engine.photo_pose import load_video_pose
    from tests.conftest import ffmpeg

    path = write_clip(tmp_path / "me.mp4", panning(30)[0])
    assert run_cli("avatars", "add", "--video", str(path), "--size", "256").code == 0
    frames = home() / "avatars" / "me" / "me-video" / "frames.mkv"
    probe = subprocess.run([ffmpeg(), "-hide_banner", "-i", str(frames)], capture_output=True, text=True).stderr
    assert "Video: utvideo" in probe, probe
    new = load_video_pose(catalog.pose_entry("me-video"))
    assert new.frames.shape == (30, 256, 256, 3)
    old = tmp_path / "old.mkv"  # the frames as the ingest wrote them before
    subprocess.run([ffmpeg(), "-v", "error", "-i", str(frames), "-c:v", "ffv1", "-level", "3", "-g", "1", "-pix_fmt",
                    "bgr0", str(old)], check=True)
    os.replace(old, frames)
    again = load_video_pose(catalog.pose_entry("me-video"))
    assert np.array_equal(again.frames, new.frames) and np.array_equal(again.mattes, new.mattes)


def test_a_clip_where_the_face_is_lost(tmp_path: Path) -> None:
    frames, _ = panning(30)
    cat = np.asarray(Image.open(CAT).convert("RGB").resize((480, 360)))
    path = write_clip(tmp_path / "lost.mp4", frames[:20] + [cat] * 10)
    result = run_cli("avatars", "add", "--video", str(path), "--size", "256")
    assert_bad_input(result, "face is lost in frame 21")


def test_a_face_lost_between_the_framing_samples_is_named_exactly(tmp_path: Path) -> None:
    """The framing pass reads only every 5th frame; the face lost in frames 22-23 alone (between its samples 20
    and 25) is still refused, and the message names the first frame without it."""
    frames, _ = panning(30)
    cat = np.asarray(Image.open(CAT).convert("RGB").resize((480, 360)))
    path = write_clip(tmp_path / "gap.mp4", frames[:21] + [cat] * 2 + frames[23:])
    assert_bad_input(run_cli("avatars", "add", "--video", str(path), "--size", "256"), "face is lost in frame 22")


def test_a_clip_framed_past_its_edge(tmp_path: Path) -> None:
    """A tight clip (the head near the top, little room at the sides): the head-and-shoulders square reaches past
    the picture, so the frames are cut and edge-extended in-process (not by ffmpeg's crop) and the matte fades
    out past the top and sides; the landmarks still sit on the face."""
    img = np.asarray(astronaut())
    frames = [np.ascontiguousarray(img[50 + d : 320 + d, 170:290]) for d in (0, 1, 2, 1) * 8]
    path = write_clip(tmp_path / "tight.mp4", frames)
    result = run_cli("avatars", "add", "--video", str(path), "--size", "256", "--json")
    assert result.code == 0, result.stderr
    folder = home() / "avatars" / "tight"
    pose = json.loads((folder / "avatar.json").read_text())["poses"][0]
    video = decode_raw(folder / pose["frames"], 256, "rgb24")
    matte = decode_raw(folder / pose["matte"], 256, "gray")[..., 0]
    track = np.load(folder / pose["landmarks"])
    assert video.shape == (32, 256, 256, 3) and matte.shape == (32, 256, 256) and track.shape == (32, 468, 3)
    assert 0.6 < pose["face_width"] / 256 < 0.72  # the framing tightened as far as a close-up's may
    for i in (0, 16, 31):
        face = track[i, [1, 33, 263, 61, 291]].round().astype(int)
        assert matte[i, face[:, 1], face[:, 0]].min() > 200
        # the face mesh lands on the face: the nose tip is brighter than the dark eye corners around it
        assert video[i, face[0, 1], face[0, 0]].mean() > 60
    # the square reaches a few px past the picture's left and right edges (the clip is 120 px wide): on the left,
    # where the shoulder fills the picture's own columns, the matte fades out past the edge
    body = matte[:, 200:].astype(float)  # below the chin (a close-up framing: the face sits low)
    assert body[..., 16:18].mean() > 150
    assert body[..., :2].mean() < 0.6 * body[..., 16:18].mean()


def test_bad_clips(tmp_path: Path) -> None:
    grey = [np.full((64, 64, 3), 128, np.uint8)] * 276
    long_clip = write_clip(tmp_path / "long.mp4", grey)
    start = time.monotonic()
    assert_bad_input(run_cli("avatars", "add", "--video", str(long_clip)), "11.0 s long; the limit is 10 s")
    assert time.monotonic() - start < 10
    huge = tmp_path / "huge.mov"  # sparse: the cap is read from the size, before a byte is
    with open(huge, "wb") as handle:
        handle.truncate(2**30 + 1)
    assert_bad_input(run_cli("avatars", "add", "--video", str(huge)), "huge.mov is 1074 MB; the limit for a clip is")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    assert_bad_input(run_cli("avatars", "add", "--video", str(text)), "not a video")
    assert_bad_input(run_cli("avatars", "add", "--video", str(CAT)), "at least 1 s")
    cat = np.asarray(Image.open(CAT).convert("RGB").resize((480, 360)))
    cat_clip = write_clip(tmp_path / "cat.mp4", [cat] * 30)
    assert_bad_input(run_cli("avatars", "add", "--video", str(cat_clip)), "no face found in the first frame of cat.mp4")
    assert_bad_input(run_cli("avatars", "add"), "either --image PHOTO or --video CLIP")
    assert_bad_input(run_cli("avatars", "add", "--image", str(ASTRONAUT), "--video", str(long_clip)), "either")


def test_a_clips_face_size_is_the_face_meshs_width_as_a_photos(tmp_path: Path) -> None:
    """The clip's minimum face size was checked on the detector's box (67 px around a face 62 px wide, cheek to
    cheek), the photo's on the face mesh: a clip of the astronaut at 68 % was taken although its face is below the
    64 px that the photo's message names. Both now measure cheek to cheek, with one message."""
    def clip_of(side: int, name: str) -> Path:
        face = np.asarray(astronaut().resize((side, side), Image.LANCZOS))
        frame = np.full((360, 480, 3), 170, np.uint8)
        frame[:side, 60 : 60 + side] = face[:360]
        return write_clip(tmp_path / name, [frame] * 25)

    small = clip_of(348, "small.mp4")  # cheeks 91 px at 512 -> 62 px
    assert_bad_input(run_cli("avatars", "add", "--video", str(small)), "the face in the first frame of small.mp4 is 62 "
                     "px wide (cheek to cheek); at least 64 px is needed")
    result = run_cli("avatars", "add", "--video", str(clip_of(372, "big.mp4")), "--json")  # -> 66 px: enough
    assert result.code == 0, result.stderr
    pose = json.loads((home() / "avatars" / "big" / "avatar.json").read_text())["poses"][0]
    assert pose["face_width"] / 66 < 2.7  # enlarged by the framing's share over the checked width, as a photo is


def test_a_clip_whose_rotation_lays_the_face_sideways(tmp_path: Path) -> None:
    """The clip's rotation tag is honoured (as players do), so an upright recording tagged 90 degrees shows a
    sideways face: refused like a sideways photo, not made into an avatar that cannot open its mouth."""
    import subprocess

    from tests.conftest import ffmpeg

    frames, _ = panning(30)
    plain = write_clip(tmp_path / "plain.mp4", frames)
    tagged = tmp_path / "tagged.mp4"
    subprocess.run([ffmpeg(), "-v", "error", "-display_rotation", "90", "-i", str(plain), "-c", "copy", str(tagged)],
                   check=True)
    assert_bad_input(run_cli("avatars", "add", "--video", str(tagged), "--size", "256"), "lying sideways")


def test_interrupting_a_clip_leaves_nothing(tmp_path: Path) -> None:
    """SIGTERM while the bundle is being written: exit 143 (Ctrl-C: 130), no avatar, no staging folder."""
    import signal
    import subprocess
    import sys

    frames, _ = panning(75)
    path = write_clip(tmp_path / "long.mp4", frames)
    # --size 256, as for every test clip: its face is 58 px cheek to cheek, under the 64 px that 512 needs
    proc = subprocess.Popen([sys.executable, "-m", "a2v_cli", "avatars", "add", "--video", str(path), "--size", "256"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    staging = home() / ".avatars-staging"
    deadline = time.monotonic() + 60
    def writing() -> bool:  # ffmpeg writes `.frames.mkv.XXXX.part` until the clip is done
        try:
            return any(".mkv" in p.name for p in staging.rglob("*"))
        except OSError:
            return False

    while not writing() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in err.decode()
    assert_nothing_left()


def test_a_photo_with_the_mouth_open_wide_is_added_with_a_warning(tmp_path: Path) -> None:
    """A laugh or a shout: the lips are not found, so the mouth does not close in pauses. The user hears it when
    adding the photo, not when watching the video; a photo with the mouth at rest is added without a word."""
    from a2v_cli.engine.photo_pose import PhotoPose, PhotoSource

    rest = add(ASTRONAUT, "--id", "rest")
    assert rest.code == 0 and "open wide" not in rest.stderr, rest.stderr
    _, image, matte, landmarks = bundle("rest")
    # the photo to add: the astronaut with her mouth opened wide by a2v's own photo pose (a frame as renders make)
    src = PhotoSource(PhotoPose("rest-photo", image, matte, landmarks[0]), 25, still=True, device="cpu")
    Image.fromarray(src.compose(range(1), np.array([[1.0, 0.3, 0, 0]], np.float32))[0][0]).save(tmp_path / "laugh.png")
    result = add(tmp_path / "laugh.png", "--id", "laugh")
    assert result.code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "open wide" in line]
    assert len(lines) == 1 and "laugh.png" in lines[0] and "closed or at rest" in lines[0], result.stderr
    assert (home() / "avatars" / "laugh" / "avatar.json").exists()
