"""Redraw docs/images/photo-pose.png: `python -m scripts.readme_stills` (after a change to the photo pose's fields).

examples/astronaut.png added as a user would (`a2v avatars add --image`, in a throwaway A2V_HOME), then its pose:
the source crop, the pose at rest, open, rounded, with the lids closed mid-blink, and the mask, each 280 px square,
side by side. Writes nothing else.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SIZE = 280
SHAPES = {"rest": (0.0, 0.0, 0.0, 0.0), "open": (0.9, 0.3, 0.0, 0.0), "rounded": (0.45, 0.0, 1.0, 0.0)}


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="a2v-stills-"))
    os.environ["A2V_HOME"] = str(home)
    atexit.register(shutil.rmtree, home, True)
    photo = ROOT / "examples" / "astronaut.png"
    subprocess.run([sys.executable, "-m", "a2v_cli", "avatars", "add", "--image", str(photo), "--id", "astro",
                    "--device", "cpu"], check=True, capture_output=True)  # fmt: skip
    from a2v_cli.engine.frames import open_source
    from a2v_cli.engine.photo_pose import photo_idle_state

    still = open_source("astro-photo", 25, still=True, device="cpu")
    panels = [still.pose.image]
    for shape in SHAPES.values():
        panels.append(still.compose(range(1), np.array([shape], np.float32))[0][0].copy())
    idle = open_source("astro-photo", 25, device="cpu")
    blink = next(f for f in range(idle.loop) if photo_idle_state(f, 25, False).blink == 1.0)
    panels.append(idle.compose(range(blink, blink + 1), np.zeros((1, 4), np.float32))[0][0].copy())
    panels.append(np.repeat(still.pose.matte[..., None], 3, axis=2))
    row = np.concatenate([np.asarray(Image.fromarray(p).resize((SIZE, SIZE), Image.LANCZOS)) for p in panels], axis=1)
    Image.fromarray(row).save(ROOT / "docs" / "images" / "photo-pose.png", optimize=True)


if __name__ == "__main__":
    main()
