"""Startup and pose-loading cost: `python -m benchmarks.bench_startup [--runs 9] [--before DIR]`.

1. Median wall time of `a2v --help`, `a2v avatars list` and `a2v avatars list --json`, each a fresh process
   (imports count), with an empty $A2V_HOME. With ``--before DIR`` (another checkout of a2v, e.g. made with
   ``git archive REV | tar -x -C DIR``) the same commands run from that tree too, interleaved run by run so
   both see the same machine load.
2. For every built-in pose, the median time to load its layers from the package bundle (what a render does)
   and to draw them with engine/art.py (what a render did before the bundles).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (("--help",), ("avatars", "list"), ("avatars", "list", "--json"))


def cli_times(trees: dict[str, Path], runs: int) -> None:
    home = tempfile.mkdtemp(prefix="a2v-bench-")
    times: dict[tuple[str, tuple[str, ...]], list[float]] = {(t, c): [] for t in trees for c in COMMANDS}
    for _ in range(runs):
        for cmd in COMMANDS:
            for name, tree in trees.items():
                env = {**os.environ, "A2V_HOME": home, "PYTHONPATH": str(tree)}  # cwd too: `-m` puts it first
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "a2v_cli", *cmd], env=env, cwd=tree, capture_output=True,
                               check=True)
                times[(name, cmd)].append(time.perf_counter() - start)
    print("| command | " + " | ".join(f"{t} median s (min)" for t in trees) + " |")
    print("|---|" + "---|" * len(trees))
    for cmd in COMMANDS:
        cells = [f"{statistics.median(times[(t, cmd)]):.3f} ({min(times[(t, cmd)]):.3f})" for t in trees]
        print(f"| a2v {' '.join(cmd)} | " + " | ".join(cells) + " |")


def pose_times(runs: int) -> None:
    from a2v_cli.engine import art
    from a2v_cli.engine.avatars import builtin_registry
    from a2v_cli.engine.drawn import load_pose_art

    poses = builtin_registry().poses
    print("\n| pose | load from bundle, median ms | draw (engine/art.py), median ms |")
    print("|---|---|---|")
    for pose_id in art.POSES:
        load, draw = [], []
        for _ in range(runs):
            start = time.perf_counter()
            load_pose_art(poses[pose_id])
            load.append(time.perf_counter() - start)
            start = time.perf_counter()
            art.draw_pose(pose_id)
            draw.append(time.perf_counter() - start)
        print(f"| {pose_id} | {1000 * statistics.median(load):.0f} | {1000 * statistics.median(draw):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--before", type=Path, help="another a2v checkout to time the CLI commands against")
    args = parser.parse_args()
    trees = {"this tree": ROOT} | ({"before": args.before.resolve()} if args.before else {})
    cli_times(trees, args.runs)
    pose_times(args.runs)


if __name__ == "__main__":
    main()
