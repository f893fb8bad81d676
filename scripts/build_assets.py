"""Rebuild the preview PNGs shipped in a2v_cli/assets/previews from the drawing code.

Run after changing a pose's art: `python scripts/build_assets.py`. tests/test_catalog.py fails
when a shipped preview no longer matches what the code draws.
"""

from a2v_cli.engine import catalog


def main() -> None:
    for pose_id in catalog.pose_ids():
        path = catalog.write_png(catalog.preview_frame(pose_id), catalog.PREVIEWS / f"{pose_id}.png")
        print(path)


if __name__ == "__main__":
    main()
