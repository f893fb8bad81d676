"""The procedural avatar art: layer shapes, premultiplied alpha, antialiased mattes, blink and mouth contracts."""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import pytest

from a2v_cli.engine import art

MAX_SWAY = 3  # px of idle head sway the compositor applies


@cache
def _art(pose_id: str) -> art.PoseArt:
    """Each pose is drawn once per test session (drawing is deterministic, tested separately)."""
    return art.draw_pose(pose_id)


def _over(dst: np.ndarray, src: np.ndarray, ox: int, oy: int) -> None:
    """Premultiplied 'over' of a sprite whose top-left corner sits at (ox, oy), clipped to dst."""
    h, w = src.shape[:2]
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + w, dst.shape[1]), min(oy + h, dst.shape[0])
    s = src[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    d = dst[y0:y1, x0:x1]
    d *= 1.0 - s[..., 3:4]
    d += s


def _person(a: art.PoseArt, dx: int = 0, dy: int = 0, blink: float = 0.0) -> np.ndarray:
    """Body with the head over it (shifted by dx, dy): premultiplied RGBA whose alpha is the matte."""
    layer = a.body.copy()
    _over(layer, a.heads[blink], a.head_origin[0] + dx, a.head_origin[1] + dy)
    return layer


def _erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Pixels whose whole (2r+1)^2 neighbourhood is inside mask (outside the frame counts as outside)."""
    out = mask
    for axis in (0, 1):
        pad = [(r, r) if i == axis else (0, 0) for i in range(2)]
        padded = np.pad(out, pad, constant_values=False)
        acc = np.ones_like(out)
        for k in range(2 * r + 1):
            acc &= np.take(padded, np.arange(k, k + out.shape[axis]), axis=axis)
        out = acc
    return out


POSE_IDS = list(art.POSES)


def test_catalog() -> None:
    assert len(art.AVATARS) >= 3
    assert len(art.POSES) >= 6
    for pid, info in art.POSES.items():
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", pid)
        assert info.pose_id == pid
        assert (info.width, info.height) == (512, 512)
        assert info.avatar_id in art.AVATARS
        assert info.name and info.description
    for aid, avatar in art.AVATARS.items():
        assert avatar.avatar_id == aid
        assert len(avatar.pose_ids) >= 2
        assert all(art.POSES[p].avatar_id == aid for p in avatar.pose_ids)
    assert sorted(p for a in art.AVATARS.values() for p in a.pose_ids) == sorted(art.POSES)


def test_unknown_pose() -> None:
    with pytest.raises(KeyError):
        art.draw_pose("nobody-front")


@pytest.mark.parametrize("pose_id", POSE_IDS)
def test_layers_shapes_and_ranges(pose_id: str) -> None:
    a = _art(pose_id)
    assert a.info == art.POSES[pose_id]
    h, w = a.info.height, a.info.width
    assert a.background.shape == (h, w, 3) and a.background.dtype == np.float32
    assert a.body.shape == (h, w, 4) and a.body.dtype == np.float32
    assert set(a.heads) == {0.0, 0.5, 1.0}
    shapes = {v.shape for v in a.heads.values()}
    assert len(shapes) == 1
    hh, hw, c = shapes.pop()
    assert c == 4 and hh <= h and hw <= w
    ox, oy = a.head_origin
    assert isinstance(ox, int) and isinstance(oy, int)
    assert ox >= 0 and oy >= 0
    assert ox + hw <= w and oy + hh <= h
    for layer in (a.background, a.body, *a.heads.values()):
        assert layer.dtype == np.float32
        assert np.isfinite(layer).all()
        assert layer.min() >= 0.0 and layer.max() <= 1.0
    for layer in (a.body, *a.heads.values()):
        assert (layer[..., :3] <= layer[..., 3:4] + 1e-6).all(), "not premultiplied"
    s = a.mouth_style
    assert all(0.0 <= v <= 1.0 for v in (*s.lip, *s.inner, *s.teeth))
    assert 18.0 <= s.half_width <= 32.0
    assert 3.0 <= s.lip_thickness <= 8.0
    assert 0.5 * s.half_width <= s.max_open <= s.half_width


@pytest.mark.parametrize("pose_id", POSE_IDS)
def test_alpha_is_antialiased(pose_id: str) -> None:
    a = _art(pose_id)
    for alpha in (a.body[..., 3], a.heads[0.0][..., 3], _person(a)[..., 3]):
        assert (alpha == 0.0).any() and (alpha >= 1.0 - 1e-6).any()
        partial = (alpha > 0.02) & (alpha < 0.98)
        assert partial.sum() > 100, "edges should carry fractional coverage"
        # jaggies: where the matte crosses 0.5 between neighbours, analytic AA leaves a fractional pixel almost
        # always; an aliased edge would jump from 0 to 1 at every crossing
        crossings = hard = 0
        for p, q in ((alpha[:, 1:], alpha[:, :-1]), (alpha[1:], alpha[:-1])):
            crossings += int(((p >= 0.5) != (q >= 0.5)).sum())
            hard += int((((p < 0.02) & (q > 0.98)) | ((p > 0.98) & (q < 0.02))).sum())
        assert crossings > 200
        assert hard < 0.3 * crossings
    matte = _person(a)[..., 3]
    assert matte[0, 0] == 0.0 and matte[0, -1] == 0.0, "top corners are background"
    assert matte[-1, a.info.width // 2] >= 1.0 - 1e-6, "the bust is cut by the bottom edge"
    assert (a.body[-1, :, 3] >= 1.0 - 1e-6).sum() > a.info.width // 2


@pytest.mark.parametrize("pose_id", POSE_IDS)
def test_head_margin(pose_id: str) -> None:
    for head in _art(pose_id).heads.values():
        alpha = head[..., 3]
        m = 6
        assert alpha[:m].max() == 0.0 and alpha[-m:].max() == 0.0
        assert alpha[:, :m].max() == 0.0 and alpha[:, -m:].max() == 0.0


@pytest.mark.parametrize("pose_id", POSE_IDS)
def test_blink_changes_only_the_eyes(pose_id: str) -> None:
    a = _art(pose_id)
    open_, half, closed = a.heads[0.0], a.heads[0.5], a.heads[1.0]
    _, my = a.mouth_center
    for other in (half, closed):
        diff = np.abs(other - open_).max(axis=-1) > 1e-6
        assert diff.any()
        ys = np.nonzero(diff)[0]
        assert ys.max() < my - 25, "blink touched pixels near the mouth"
        assert ys.max() - ys.min() < 45, "blink changes should stay in one band of eye height"
        assert diff.sum() < 0.03 * diff.size
        assert np.allclose(other[..., 3], open_[..., 3], atol=1e-5), "lids are drawn on opaque skin"
    # the eye whites are visible when open and covered by the lids when closed
    band = slice(ys.min(), ys.max() + 1)

    def whites(h: np.ndarray) -> int:
        return int((h[band, :, :3].min(axis=-1) > 0.93).sum())

    assert whites(open_) > 40
    assert whites(closed) < 0.05 * whites(open_)
    assert whites(closed) <= whites(half) <= whites(open_)


@pytest.mark.parametrize("pose_id", POSE_IDS)
def test_mouth_sits_on_plain_skin(pose_id: str) -> None:
    a = _art(pose_id)
    s = a.mouth_style
    mx, my = a.mouth_center
    x0, x1 = round(mx - s.half_width - 4), round(mx + s.half_width + 4)
    y0, y1 = round(my - s.lip_thickness - 2), round(my + s.max_open / 2 + s.lip_thickness)
    for head in a.heads.values():
        assert head[round(my), round(mx), 3] >= 1.0 - 1e-6
        patch = head[y0 : y1 + 1, x0 : x1 + 1]
        assert (patch[..., 3] >= 1.0 - 1e-6).all(), "the mouth area must be opaque"
        assert patch[..., :3].std(axis=(0, 1)).max() < 0.02, "the mouth area must be plain skin"
    # and the skin there is the face's colour, not hair or background
    fx = round(mx)
    cheek = a.heads[0.0][round(my), fx, :3]
    assert np.abs(cheek - a.background[round(my) + a.head_origin[1], fx + a.head_origin[0]]).max() > 0.02


@pytest.mark.parametrize("pose_id", POSE_IDS)
def test_sway_opens_no_gaps(pose_id: str) -> None:
    a = _art(pose_id)
    rest = _person(a)[..., 3] >= 1.0 - 1e-6
    interior = _erode(rest, MAX_SWAY + 2)
    for dx in (-MAX_SWAY, 0, MAX_SWAY):
        for dy in (-MAX_SWAY, 0, MAX_SWAY):
            moved = _person(a, dx, dy)[..., 3]
            assert moved[interior].min() >= 0.999, f"a gap opens at sway ({dx}, {dy})"


def test_deterministic() -> None:
    pid = POSE_IDS[0]
    a, b = art.draw_pose(pid), _art(pid)
    assert np.array_equal(a.background, b.background)
    assert np.array_equal(a.body, b.body)
    for k in a.heads:
        assert np.array_equal(a.heads[k], b.heads[k])
    assert (a.head_origin, a.mouth_center, a.mouth_style) == (b.head_origin, b.mouth_center, b.mouth_style)


def test_poses_distinct() -> None:
    frames = {}
    for pid in POSE_IDS:
        a = _art(pid)
        p = _person(a)
        frames[pid] = p[..., :3] + a.background * (1.0 - p[..., 3:4])
    for i, p in enumerate(POSE_IDS):
        for q in POSE_IDS[i + 1 :]:
            assert np.abs(frames[p] - frames[q]).mean() > 0.02, f"{p} and {q} look alike"
            assert not np.allclose(_art(p).background, _art(q).background, atol=0.02)
