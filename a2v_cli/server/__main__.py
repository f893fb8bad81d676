"""`python -m a2v_cli.server`: the server without the CLI (tests, benchmarks, containers)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from a2v_cli.errors import A2VError
from a2v_cli.server import ServerSettings, serve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m a2v_cli.server", description="Serve the A2V API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--data-dir", type=Path)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--tokens-file", type=Path)
    p.add_argument("--allow-private-urls", action="store_true")
    p.add_argument("--public-url")
    p.add_argument("--max-upload-bytes", type=int, default=ServerSettings.max_upload_bytes)
    p.add_argument("--max-audio-seconds", type=float, default=ServerSettings.max_audio_seconds)
    p.add_argument("--download-timeout", dest="download_timeout_s", type=float,
                   default=ServerSettings.download_timeout_s)
    p.add_argument("--body-timeout", dest="body_timeout_s", type=float, default=ServerSettings.body_timeout_s)
    p.add_argument("--body-deadline", dest="body_deadline_s", type=float, default=ServerSettings.body_deadline_s)
    p.add_argument("--avatar-timeout", dest="avatar_timeout_s", type=float, default=None)
    p.add_argument("--device", default=ServerSettings.device, choices=("auto", "cpu", "cuda"))
    p.add_argument("--broker", default=os.environ.get("A2V_BROKER") or None)
    p.add_argument("--database", default=os.environ.get("A2V_DATABASE") or None)
    p.add_argument("--storage", default=os.environ.get("A2V_STORAGE") or None)
    p.add_argument("--queue", default=ServerSettings.queue)
    p.add_argument("--claim-timeout", dest="claim_timeout_s", type=float, default=ServerSettings.claim_timeout_s)
    p.add_argument("--max-tries", type=int, default=ServerSettings.max_tries)
    p.add_argument("--log-format", default=ServerSettings.log_format, choices=("text", "json"))
    args = p.parse_args(argv)
    try:
        serve(ServerSettings(**vars(args)))
    except A2VError as err:
        print(f"a2v serve: {err}", file=sys.stderr)
        return int(err.exit_code)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
