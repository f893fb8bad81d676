"""Where a2v keeps its state, and the limits a user can change through the environment."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MAX_AUDIO_SECONDS = 3600.0
DEFAULT_FPS = 25


def home_path() -> Path:
    """`$A2V_HOME`, else the platform's user data dir (e.g. ~/.local/share/a2v); not created."""
    env = os.environ.get("A2V_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("a2v", appauthor=False))


def home_dir() -> Path:
    """`home_path()`, created on demand."""
    path = home_path()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise home_error(path, err.strerror or str(err)) from None
    return path


def home_error(path: Path, reason: str) -> Exception:
    """Exit 2 naming A2V_HOME and the directory: the user can fix it, it is not a crash."""
    from a2v_cli.errors import InputError

    return InputError(
        f"A2V_HOME {path} is not usable ({reason})", "make that directory writable or set A2V_HOME to one that is"
    )


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
    if not (0 < value < float("inf")):
        from a2v_cli.errors import InputError

        raise InputError(f"A2V_MAX_AUDIO_SECONDS={raw!r} must be a positive number of seconds", "e.g. 600")
    return value
