"""Where a tenant's own data lives on the server: ``<data-dir>/avatars/<tenant>/``.

Why a hash: a token's name is the tenant, chosen by whoever runs the server; the folder name must be
safe on any filesystem and must not reveal the name in URLs (a preview link carries it).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

TENANT_KEY = re.compile(r"[0-9a-f]{24}")


def tenant_key(owner: str) -> str:
    """A token name's folder name (and its name in signed preview links)."""
    return hashlib.sha256(b"a2v-tenant\n" + owner.encode()).hexdigest()[:24]


def tenant_home(data_dir: Path, owner: str) -> Path:
    """The tenant's folder: its ``avatars/`` (bundles, the same format as `$A2V_HOME/avatars`) and staging."""
    return data_dir / "avatars" / tenant_key(owner)


def tenant_avatars(data_dir: Path, owner: str) -> Path:
    """The folder of the tenant's avatar bundles (may not exist: then it has none)."""
    return tenant_home(data_dir, owner) / "avatars"
