"""Where a2v keeps its state, and the limits a user can change through the environment."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MAX_AUDIO_SECONDS = 3600.0
DEFAULT_FPS = 25


def home_dir() -> Path:
    """`$A2V_HOME`, else the platform's user data dir (e.g. ~/.local/share/a2v). Created on demand."""
    env = os.environ.get("A2V_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("a2v", appauthor=False))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        from a2v_cli.errors import InputError

        raise InputError(f"cannot create the a2v home {path}: {err.strerror or err}",
                         "set A2V_HOME to a writable directory") from None
    return path


def max_audio_seconds() -> float:
    """Longest audio `generate` accepts: `$A2V_MAX_AUDIO_SECONDS`, default one hour."""
    raw = os.environ.get("A2V_MAX_AUDIO_SECONDS")
    if not raw:
        return DEFAULT_MAX_AUDIO_SECONDS
    try:
        value = float(raw)
    except ValueError:
        from a2v_cli.errors import InputError

        raise InputError(f"A2V_MAX_AUDIO_SECONDS={raw!r} is not a number", "set it to seconds, e.g. 600") from None
    return value
