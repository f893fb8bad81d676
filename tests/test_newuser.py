"""What a new user tried that broke, through the real CLI: each test failed before its fix."""

from __future__ import annotations

from pathlib import Path

from conftest import one_error_line, run_cli

from a2v_cli.errors import ExitCode


def test_serve_data_dir_that_is_a_file(isolated: Path) -> None:
    """Was exit 1, `unexpected FileExistsError: [Errno 17] File exists`."""
    (isolated / "notes.txt").write_text("mine\n")
    r = run_cli("serve", "--port", "0", "--data-dir", "notes.txt")
    assert r.code == ExitCode.USAGE, r.stderr
    one_error_line(r.stderr, "--data-dir notes.txt is not a directory")
    assert (isolated / "notes.txt").read_text() == "mine\n"
