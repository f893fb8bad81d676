"""The shipped completion scripts are what the app generates today."""

import pytest
from conftest import ROOT, run_cli


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_up_to_date(shell: str) -> None:
    r = run_cli(env={"_A2V_COMPLETE": f"source_{shell}"})
    assert r.code == 0, r.stderr
    shipped = (ROOT / "completions" / f"a2v.{shell}").read_text()
    assert r.stdout == shipped, f"regenerate: _A2V_COMPLETE=source_{shell} a2v > completions/a2v.{shell}"


def test_pose_ids_complete() -> None:
    r = run_cli(env={"_A2V_COMPLETE": "complete_bash", "COMP_WORDS": "a2v generate --pose ava", "COMP_CWORD": "3"})
    assert "ava-front" in r.stdout.split() and "leo-front" not in r.stdout.split()
