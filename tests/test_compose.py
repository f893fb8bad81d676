"""The compositor: seamless idle loop, reused buffers never leak old pixels, mask matches the art."""

from __future__ import annotations

import numpy as np

from a2v_cli.engine import catalog
from a2v_cli.engine.compose import LOOP_SECONDS, MAX_SWAY, Compositor, idle_state


def test_idle_motion_loops_seamlessly_and_stays_small() -> None:
    loop = round(LOOP_SECONDS * 25)
    states = [idle_state(f, 25) for f in range(3 * loop)]
    assert states[:loop] == states[loop : 2 * loop] == states[2 * loop :]
    dx = np.array([s.dx for s in states[:loop]])
    dy = np.array([s.dy for s in states[:loop]])
    assert np.abs(dx).max() <= MAX_SWAY and np.abs(dy).max() <= MAX_SWAY
    assert np.abs(np.diff(dx)).max() <= 0.25 and np.abs(np.diff(dy)).max() <= 0.25  # no jumps, even at the seam
    assert abs(dx[0] - dx[-1]) <= 0.25
    blinks = [s.blink for s in states[:loop]]
    assert 1.0 in blinks and 0.5 in blinks and blinks.count(0.0) > 0.9 * loop


def test_reused_buffers_hold_exactly_the_requested_frames() -> None:
    art = catalog.pose_art("mika-side")
    comp = Compositor(art, 25, ring=2)
    batches = [range(b, b + 7) for b in range(0, 70, 7)]
    for frames in batches:
        rgb, mask, _, mouths = comp.compose(frames)
        rgb[:, :4] = 0  # a consumer scribbling on a batch must not leak into later ones
        fresh = Compositor(art, 25)
        ref_rgb, ref_mask, _, ref_mouths = fresh.compose(frames)
        assert np.array_equal(rgb[:, 4:], ref_rgb[:, 4:]) and np.array_equal(mask, ref_mask)
        assert np.array_equal(mouths, ref_mouths)


def test_mask_is_the_avatar_silhouette() -> None:
    art = catalog.pose_art("leo-front")
    _, mask, straight, _ = Compositor(art, 25, straight_alpha=True).compose(range(1))
    assert straight is not None
    m = mask[0].astype(int)
    assert m[0, 0] == 0 and m[-1, art.info.width // 2] == 255
    body_alpha = np.round(art.body[..., 3] * 255)
    outside_head = body_alpha.copy()
    y0, y1, x0, x1 = Compositor(art, 25).box
    outside_head[y0:y1, x0:x1] = m[y0:y1, x0:x1]
    assert np.abs(outside_head - m).max() <= 1
