"""Bearer tokens and signed download URLs.

Tokens come from a JSON file (``{"name": "token", ...}``) and/or ``A2V_SERVER_TOKENS``
(``name1:token1,name2:token2``); with neither, one token named ``default`` is generated once and kept in
``<data_dir>/tokens.json`` (mode 0600). The distributed deployment imports those into its database and
authenticates against it (`pg_tokens`); both answer through the `Authenticator` protocol. A token's
*name* owns the videos it creates, so a token can be rotated under the same name without orphaning its
history. Token values never reach a log.

Result files are served without the bearer token, behind URLs signed with HMAC-SHA256 over
(video id, kind, expiry) with a secret generated once and kept in ``<data_dir>/url-signing.key`` (0600).

Everything the server writes is private to its user (umask 077), and the access log shows the values
of known, harmless query parameters only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from a2v_cli.errors import InputError
from a2v_cli.wire import ascii_int

log = logging.getLogger("a2v.server")

TOKENS_ENV = "A2V_SERVER_TOKENS"
GENERATED_TOKENS_FILE = "tokens.json"
SIGNING_KEY_FILE = "url-signing.key"
DEFAULT_URL_LIFETIME_S = 24 * 3600


def write_private_file(path: Path, data: bytes) -> bool:
    """Create ``path`` with mode 0600 holding ``data``; False (and nothing written) if it already exists.

    O_EXCL makes two servers starting at once agree on one file; the mode is set at creation, so the
    secret is never readable by others, not even for a moment.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic, and fails if another process got there first
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def make_private(data_dir: Path) -> None:
    """Create ``data_dir`` (0700) and make everything this process writes from now on owner-only.

    The data dir holds every tenant's audio and videos; with the usual umask 022 a file would be
    readable by every local user. An existing dir that others can enter or read is left as it is (the
    operator may share it on purpose) but earns one warning.
    """
    os.umask(0o077)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "data dir %s is open to other users (mode %04o); run chmod 700 %s", data_dir, mode, data_dir
        )


# --- tokens ----------------------------------------------------------------------------------------


class TokenError(InputError):
    """The token configuration is unusable (bad file, empty or duplicate token)."""


class Authenticator(Protocol):
    """Who a presented bearer token belongs to: `Tokens` (embedded) or the tokens table (`pg_tokens.DbTokens`)."""

    def owner(self, presented: str) -> str | None:
        """The token's name, from memory only (never blocks); None when not known here (yet)."""
        ...

    def lookup(self, presented: str) -> str | None:
        """The token's name from the source of truth (may block: call it off the event loop), else None."""
        ...


def matching_name(candidate: bytes, by_name: Mapping[str, bytes]) -> str | None:
    """The name whose value equals ``candidate``, else None.

    Compares against every value with ``hmac.compare_digest`` and never stops early, so the time
    taken says nothing about how close a guess was or which token it resembled.
    """
    found: str | None = None
    for name, value in by_name.items():
        if hmac.compare_digest(candidate, value) and found is None:
            found = name
    return found


def token_hash(token: str) -> bytes:
    """What a database keeps of a token: its SHA-256 (a token is a long random secret; no salt needed)."""
    return hashlib.sha256(b"a2v-token\n" + token.encode("utf-8")).digest()


@dataclass(frozen=True)
class Tokens:
    """The accepted bearer tokens by name, from a file or the environment (the embedded server)."""

    by_name: dict[str, bytes]

    def owner(self, presented: str) -> str | None:
        """The name of the token ``presented`` matches, else None (constant-time: `matching_name`)."""
        return matching_name(presented.encode("utf-8"), self.by_name)

    def lookup(self, presented: str) -> str | None:
        return None  # every token is in memory already

    def plain(self) -> dict[str, str]:
        """name -> token, to import into a database."""
        return {name: value.decode("utf-8") for name, value in self.by_name.items()}


def parse_tokens_env(raw: str) -> dict[str, str]:
    """``name1:token1,name2:token2`` -> {name: token}."""
    out: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, token = item.partition(":")
        if not sep or not name.strip() or not token.strip():
            raise TokenError(f"{TOKENS_ENV} must look like name1:token1,name2:token2 (an entry has no name or token)")
        _add(out, name.strip(), token.strip(), TOKENS_ENV)
    return out


def read_tokens_file(path: Path) -> dict[str, str]:
    """A JSON object of name -> token."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenError(f"tokens file {path} does not exist") from None
    except (OSError, ValueError) as err:
        raise TokenError(f"cannot read tokens file {path}: {err}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise TokenError(f'tokens file {path} must hold a JSON object of name -> token, e.g. {{"ci": "s3cret"}}')
    if path.stat().st_mode & 0o077:
        log.warning("tokens file %s is readable by other users; chmod 600 it", path)
    out: dict[str, str] = {}
    for name, token in data.items():
        if not name.strip() or not token.strip():
            raise TokenError(f"tokens file {path} has an entry with an empty name or token")
        _add(out, name.strip(), token.strip(), str(path))
    return out


def _add(into: dict[str, str], name: str, token: str, source: str) -> None:
    if name in into and into[name] != token:
        raise TokenError(f"token name {name!r} is given twice with different tokens ({source})")
    if token in into.values() and into.get(name) != token:
        raise TokenError(f"two token names share one token ({source}); each name needs its own token")
    into[name] = token


def load_tokens(data_dir: Path, tokens_file: Path | None, env: dict[str, str] | None = None,
                generate: bool = True) -> Tokens:
    """The configured tokens (file, then environment); without any, the generated ``default`` token
    (with ``generate``; else none)."""
    env = os.environ if env is None else env
    merged: dict[str, str] = {}
    if tokens_file is not None:
        for name, token in read_tokens_file(tokens_file).items():
            _add(merged, name, token, str(tokens_file))
    for name, token in parse_tokens_env(env.get(TOKENS_ENV, "")).items():
        _add(merged, name, token, TOKENS_ENV)
    if not merged and generate:
        path = data_dir / GENERATED_TOKENS_FILE
        body = json.dumps({"default": secrets.token_urlsafe(32)}, indent=2).encode() + b"\n"
        if write_private_file(path, body):
            log.warning("no tokens configured; created one in %s", path)
        else:
            log.info("no tokens configured; using the generated one in %s", path)
        merged = read_tokens_file(path)
    return Tokens({name: token.encode("utf-8") for name, token in merged.items()})


# --- signed URLs -----------------------------------------------------------------------------------


def load_signing_key(data_dir: Path) -> bytes:
    """The URL-signing secret, created (32 random bytes, hex, mode 0600) on first use."""
    path = data_dir / SIGNING_KEY_FILE
    write_private_file(path, secrets.token_hex(32).encode() + b"\n")
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise InputError(f"URL signing key {path} is too short", "delete it; the server makes a new one")
    return bytes.fromhex(key) if all(c in "0123456789abcdef" for c in key) else key.encode()


class UrlSigner:
    """Signs and checks (video id, kind, expiry) triples; the expiry is a Unix time in seconds."""

    def __init__(self, key: bytes, lifetime_s: int = DEFAULT_URL_LIFETIME_S) -> None:
        self._key = key
        self.lifetime_s = lifetime_s

    def signature(self, video_id: str, kind: str, expires: int) -> str:
        msg = f"{video_id}\n{kind}\n{expires}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def sign(self, video_id: str, kind: str, now: float | None = None) -> tuple[int, str]:
        expires = int(now if now is not None else time.time()) + self.lifetime_s
        return expires, self.signature(video_id, kind, expires)

    def check(self, video_id: str, kind: str, expires: str, signature: str, now: float | None = None) -> str | None:
        """None when valid, else why not ("expired", "bad signature")."""
        when = ascii_int(expires) if len(expires) <= 12 else None
        if when is None:  # "²" passes str.isdigit() but not int(): parse strictly, never raise
            return "bad signature"
        good = self.signature(video_id, kind, when)
        if not hmac.compare_digest(good.encode(), signature.encode("utf-8", "replace")):
            return "bad signature"
        if when < (now if now is not None else time.time()):
            return "expired"
        return None


# --- the access log --------------------------------------------------------------------------------


class RedactQuery(logging.Filter):
    """Keep secrets out of the access log: only known, harmless query parameters keep their values.

    A signed URL's signature works like a password for a day, and a client may put its token in a query
    string by mistake (``?token=...``); every value but those of ``SAFE_PARAMS`` becomes ``REDACTED``,
    whole, whatever characters it holds (a name that does not look like one is redacted too).
    """

    SAFE_PARAMS = frozenset({"video_id", "avatar_id", "limit", "expires"})
    _name = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.redact(a) if isinstance(a, str) else a for a in record.args)
        return True

    @classmethod
    def redact(cls, target: str) -> str:
        """``/p?video_id=x&signature=y`` -> ``/p?video_id=x&signature=REDACTED``."""
        path, sep, query = target.partition("?")
        if not sep:
            return target
        parts = []
        for item in query.split("&"):
            name, eq, _ = item.partition("=")
            if not item or (eq and name in cls.SAFE_PARAMS):
                parts.append(item)
            elif eq and cls._name.fullmatch(name):
                parts.append(f"{name}=REDACTED")
            else:
                parts.append("REDACTED")
        return f"{path}?{'&'.join(parts)}"
