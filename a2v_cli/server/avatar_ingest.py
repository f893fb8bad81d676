"""The child process that builds one tenant's avatar bundle from an uploaded photo or clip.

Why a child: decoding hostile images and video and running the face models takes seconds of CPU; in
a process of its own it runs off the server's event loop and threads, with a scrubbed environment
(no token), and it can be killed when the whole-operation deadline passes. Reads one JSON spec on
stdin, writes one JSON answer on its own copy of stdout (libraries that print go to stderr).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def build(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `ingest.add_photo` / `add_video` for ``spec``; the answer is the manifest or the error."""
    from a2v_cli.engine import ingest
    from a2v_cli.errors import A2VError, InputError

    warnings: list[str] = []
    try:
        try:
            req = ingest.PhotoRequest(Path(spec["path"]), spec["avatar_id"], spec.get("name"), spec.get("description"),
                                      int(spec["size"]), spec.get("face"), spec.get("device", "auto"), spec["kind"])
            add = ingest.add_video if req.kind == "video" else ingest.add_photo
            manifest = add(req, Path(spec["home"]), set(spec["builtin"]), warnings.append)
        except MemoryError:  # the upload's doing, not a bug: a 400 that says so (it was "internal error: MemoryError")
            raise InputError("the uploaded file needs more memory than this server has for one avatar",
                             "send a smaller photo or a shorter clip") from None
    except A2VError as err:
        return {"error": {"api_code": err.api_code, "message": err.message, "hint": err.hint}}
    except Exception as err:  # a bug: the parent answers 50000, the traceback goes to the server's log
        import traceback

        traceback.print_exc()
        return {"error": {"api_code": 50000, "message": f"internal error: {err.__class__.__name__}", "hint": None}}
    return {"manifest": manifest, "warnings": warnings}


def main() -> None:
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    if hasattr(os, "nice"):
        try:
            os.nice(10)
        except OSError:
            pass
    answer = build(json.loads(sys.stdin.read()))
    channel.write(json.dumps(answer) + "\n")
    channel.flush()


if __name__ == "__main__":
    main()
