"""Which server and token to use, and where `a2v auth login` keeps them.

Server: --server, then A2V_SERVER, then the config file; none means local mode.
Token: A2V_TOKEN, then the token stored for that server. Tokens are never flag values (they
would leak into `ps` and shell history) and the file holding them is mode 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from a2v_cli.errors import AuthError, InputError


def config_dir() -> Path:
    env = os.environ.get("A2V_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("a2v", appauthor=False))


def config_path() -> Path:
    return config_dir() / "config.json"


API_PREFIX = "/v1/a2v"  # the spec's path prefix, which the client adds itself


def normalize_server(url: str) -> str:
    """The server's base URL. A URL copied with the API's own prefix (`.../v1/a2v`, as the spec and the
    OpenAPI document show it) names the same server: without this it became `.../v1/a2v/v1/a2v/...`."""
    url = url.strip().rstrip("/")
    if not url.lower().startswith(("http://", "https://")):
        raise InputError(f"server {url!r} is not an http(s) URL", "e.g. --server http://127.0.0.1:8000")
    if url.lower().endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)].rstrip("/")
    return url


def load_config() -> dict[str, Any]:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {path}: {err}", "fix or delete the file") from None
    if not isinstance(data, dict) or not isinstance(data.get("tokens", {}), dict):
        # not a2v's: rewriting it would replace whatever it holds
        raise InputError(f"{path} is not an a2v config (a JSON object with a `tokens` object)",
                         "move it away, or point A2V_CONFIG_DIR elsewhere")
    return data


def save_config(data: dict[str, Any]) -> Path:
    """Write the config atomically with mode 0600 (it may hold tokens), in a 0700 directory.

    A config.json that is a symlink (a dotfiles manager's) is written where it points: replacing the link
    with a file would cut it from the user's dotfiles.
    """
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.is_symlink():
        path = path.resolve()
    fd, tmp = tempfile.mkstemp(prefix=".config.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class Remote:
    """The resolved remote settings; ``server`` None means local mode."""

    server: str | None
    server_source: str | None  # "--server", "A2V_SERVER", "config"
    token: str | None
    token_source: str | None  # "A2V_TOKEN", "config"


def _env(name: str) -> str:
    """A setting from the environment, without the spaces and newline `$(cat file)` or a CRLF file leave."""
    return os.environ.get(name, "").strip()


def check_token(token: str, source: str) -> str:
    """A bearer token is printable ASCII without spaces (RFC 6750); anything else would fail in the HTTP layer
    as an 'unreachable server' (exit 5) instead of the bad token it is (exit 3)."""
    if not all("!" <= c <= "~" for c in token):
        raise AuthError(f"the token from {source} has a character a token cannot have (a space, a control or a "
                        "non-ASCII character)", "check A2V_TOKEN or run `a2v auth login` again")
    return token


def resolve(server_flag: str | None = None) -> Remote:
    config = load_config()
    if server_flag:
        server, source = normalize_server(server_flag), "--server"
    elif _env("A2V_SERVER"):
        server, source = normalize_server(_env("A2V_SERVER")), "A2V_SERVER"
    elif config.get("server"):
        server, source = normalize_server(str(config["server"])), "config"
    else:
        return Remote(None, None, None, None)
    if _env("A2V_TOKEN"):
        return Remote(server, source, check_token(_env("A2V_TOKEN"), "A2V_TOKEN"), "A2V_TOKEN")
    stored = (config.get("tokens") or {}).get(server)
    return Remote(server, source, stored, "config" if stored else None)


def store_login(server: str, token: str, make_default: bool = True) -> Path:
    config = load_config()
    config.setdefault("tokens", {})[server] = token
    if make_default:
        config["server"] = server
    return save_config(config)


def forget_login(server: str) -> bool:
    config = load_config()
    tokens = config.get("tokens") or {}
    removed = tokens.pop(server, None) is not None
    if config.get("server") == server:
        config.pop("server")
        removed = True
    if removed:
        save_config(config)
    return removed
