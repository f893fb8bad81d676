"""The frame-source interface: what the renderer and the lip-sync models need from any pose.

A drawn pose (the compositor), a photo pose and a video pose all give, for a range of frame
indices, the base frames, their matte and the face geometry (mouth centre, face box), so the
render loop and both model kinds never ask which kind of pose they are working on.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

Batch = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]  # rgb, mask, straight rgb or None, mouths


class FrameSource(Protocol):
    kind: str  # "drawn", "photo" or "video"
    draws_mouth: bool  # True: compose() moves the pose's own mouth by the articulation; False: a model paints one
    width: int
    height: int
    fps: float
    # optional: ``crf``, the H.264 quality the source's content needs (the encoder's default when absent)

    def compose(self, frames: range, articulation: np.ndarray | None = None) -> Batch:
        """RGB (B,H,W,3) uint8, mask (B,H,W) uint8, straight-alpha RGB (or None) and mouth centres (B,2).

        ``articulation`` (B,4: open, spread, round, press in 0..1) drives a source that ``draws_mouth``;
        None is a neutral, closed mouth. The arrays may be reused a few calls later (see Compositor).
        """
        ...

    def face_boxes(self, mouths: np.ndarray) -> np.ndarray:
        """(B,4) square face boxes x0, y0, x1, y1 in frame pixels for these frames' mouth centres."""
        ...


def open_source(
    pose_id: str, fps: float, straight_alpha: bool = False, ring: int = 4, still: bool = False, device: str = "auto"
) -> FrameSource:
    """The frame source of any registered pose (NotFoundError with suggestions for an unknown id)."""
    from a2v_cli.engine import catalog

    entry = catalog.pose_entry(pose_id)
    if entry.kind == "drawn":
        from a2v_cli.engine.compose import Compositor

        return Compositor(catalog.pose_art(pose_id), fps, straight_alpha=straight_alpha, ring=ring, still=still)
    if entry.kind == "photo":
        from a2v_cli.engine.photo_pose import PhotoSource, load_photo_pose

        return PhotoSource(load_photo_pose(entry), fps, straight_alpha=straight_alpha, ring=ring, still=still,
                           device=device)
    from a2v_cli.engine.photo_pose import VideoSource, load_video_pose

    return VideoSource(load_video_pose(entry), fps, straight_alpha=straight_alpha, ring=ring, still=still,
                       device=device)
