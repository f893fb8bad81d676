"""Credentials: the resolution order, a 0600 config file, and a token that never shows up in output."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from conftest import run_cli

from a2v_cli import credentials
from a2v_cli.errors import ExitCode


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "config"
    monkeypatch.setenv("A2V_CONFIG_DIR", str(d))
    return d


def test_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert credentials.resolve().server is None  # nothing configured: local mode
    credentials.store_login("http://stored.test", "stored-token")
    r = credentials.resolve()
    assert (r.server, r.server_source, r.token, r.token_source) == ("http://stored.test", "config", "stored-token",
                                                                    "config")
    monkeypatch.setenv("A2V_SERVER", "http://env.test/")
    r = credentials.resolve()
    assert (r.server, r.server_source, r.token) == ("http://env.test", "A2V_SERVER", None)
    monkeypatch.setenv("A2V_TOKEN", "env-token")
    r = credentials.resolve("http://flag.test")
    assert (r.server, r.server_source, r.token, r.token_source) == ("http://flag.test", "--server", "env-token",
                                                                    "A2V_TOKEN")


def test_config_file_is_private(config_dir: Path) -> None:
    path = credentials.store_login("http://s.test", "tok")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700


def test_login_reads_stdin_status_hides_token_logout(config_dir: Path) -> None:
    r = run_cli("auth", "login", "--server", "http://127.0.0.1:9", "--no-verify", input=b"sekrit-value\n")
    assert r.code == 0, r.stderr
    assert "sekrit-value" not in r.stdout + r.stderr
    assert stat.S_IMODE((config_dir / "config.json").stat().st_mode) == 0o600
    s = run_cli("auth", "status", "--json")
    assert s.json()["server"] == "http://127.0.0.1:9" and s.json()["token_source"] == "config"
    assert "sekrit-value" not in s.stdout + s.stderr
    # the stored server is now the default: commands go remote, and an unreachable server is exit 5
    r = run_cli("avatars", "list", "--http-timeout", "1")
    assert r.code == ExitCode.UNAVAILABLE and "cannot reach" in r.stderr and "sekrit-value" not in r.stderr
    assert run_cli("avatars", "list", "--local", "--json").code == 0  # --local forces local mode
    assert run_cli("auth", "logout").code == 0
    assert run_cli("auth", "status", "--json").json()["mode"] == "local"


def test_remote_without_token_is_auth_error() -> None:
    r = run_cli("avatars", "list", env={"A2V_SERVER": "http://127.0.0.1:9"})
    assert r.code == ExitCode.AUTH and "A2V_TOKEN" in r.stderr


def test_login_with_empty_token_is_refused() -> None:
    r = run_cli("auth", "login", "--server", "http://127.0.0.1:9", "--no-verify", input=b"\n")
    assert r.code == ExitCode.USAGE and "no token" in r.stderr


def test_token_is_not_a_flag() -> None:
    r = run_cli("auth", "login", "--server", "http://127.0.0.1:9", "--token", "x")
    assert r.code == ExitCode.USAGE


def test_after_login_commands_say_they_went_remote(config_dir: Path) -> None:
    r = run_cli("auth", "login", "--server", "http://127.0.0.1:9", "--no-verify", "--json", input=b"tok-123\n")
    assert r.code == 0 and r.json() == {"server": "http://127.0.0.1:9", "config_file": str(config_dir / "config.json")}
    t = run_cli("avatars", "list", "--http-timeout", "1")
    assert "Remote mode: server http://127.0.0.1:9 (from `a2v auth login`)" in t.stderr, t.stderr
    j = run_cli("avatars", "list", "--http-timeout", "1", "--json")
    err = j.stderr.strip().splitlines()
    assert len(err) == 1  # one JSON line, no mode line
    assert json.loads(err[0])["mode"] == "remote" and json.loads(err[0])["server"] == "http://127.0.0.1:9"
    out = run_cli("auth", "logout", "--json")
    assert out.code == 0 and out.json() == {"server": "http://127.0.0.1:9", "logged_out": True}


def test_login_keeps_a_symlinked_config_and_refuses_one_that_is_not_a2vs(config_dir: Path, tmp_path: Path) -> None:
    """`auth login` replaced a symlinked config.json (a dotfiles manager's) with a plain file, and wrote over a
    config.json that held something else (a JSON list) as if it were empty."""
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "a2v.json").write_text("{}")
    config_dir.mkdir()
    (config_dir / "config.json").symlink_to(dotfiles / "a2v.json")
    r = run_cli("auth", "login", "--server", "http://a.test", "--no-verify", input=b"tok-123\n")
    assert r.code == 0, r.stderr
    assert (config_dir / "config.json").is_symlink()
    assert json.loads((dotfiles / "a2v.json").read_text())["tokens"] == {"http://a.test": "tok-123"}
    (config_dir / "config.json").unlink()
    (config_dir / "config.json").write_text('["my", "list"]')
    bad = run_cli("auth", "login", "--server", "http://a.test", "--no-verify", input=b"tok-123\n")
    assert bad.code == ExitCode.USAGE and "is not an a2v config" in bad.stderr, bad.stderr
    assert (config_dir / "config.json").read_text() == '["my", "list"]'
