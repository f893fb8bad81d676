"""Numbers that arrive over HTTP (headers, query strings, cursors), parsed strictly.

`str.isdigit()` accepts `²` and `int()` accepts `٣`, ` 7 ` and `1_000`; a request or a remote host
must not be able to reach an `int()` that raises, nor slip a number past a check that way. Only ASCII
digits count, and never more than fit in SQLite's 64-bit integers.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]{1,18}")  # at most 18 digits: always below 2**63


def ascii_int(text: str | bytes | None) -> int | None:
    """The non-negative integer ``text`` spells in 1 to 18 ASCII digits (no sign, space or ``_``), else None."""
    if text is None:
        return None
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    return int(text) if _DIGITS.fullmatch(text) else None
