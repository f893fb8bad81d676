"""The codebase stays ruff clean (run as a test so CI's single test command checks it)."""

import subprocess
import sys

from conftest import ROOT


def test_ruff_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
