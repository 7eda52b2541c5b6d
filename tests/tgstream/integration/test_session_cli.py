"""The session helper through a real pseudo-terminal, and `tgstream run` with a bad session."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from dotenv import dotenv_values

from tests.tgstream.fakes import FakeTelegram, session_string
from tests.tgstream.harness import run_cli, start_service
from tests.tgstream.login_driver import NEW_SESSION
from tgstream.session_cli import diagnose

ROOT = Path(__file__).resolve().parents[3]
API_HASH = "0123456789abcdef0123456789abcdef"
OLD = session_string(user_id=42, key=b"\x01" * 256)


def env_file(tmp_path: Path, session: str = OLD, **extra: str) -> Path:
    env = tmp_path / ".env"
    lines = {"API_ID": "1", "API_HASH": API_HASH, "SESSION_STRING": session, **extra}
    env.write_text("# ours\n" + "".join(f"{k}={v}\n" for k, v in lines.items()))
    env.chmod(0o600)
    return env


def test_interactive_flow_with_a_wrong_code_and_2fa_writes_the_env(tmp_path: Path) -> None:
    env = env_file(tmp_path, CHAT_ID="-100123")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "tests.tgstream.login_driver", "--write-env", str(env)],
        cwd=ROOT,
        encoding="utf-8",
        timeout=30,
        env={**os.environ, "COLUMNS": "200"},
    )
    child.expect("Phone number")
    child.sendline("+441234567890")
    child.expect("Login code")
    child.sendline("11111")
    child.expect("That code is wrong")
    child.expect("Login code")
    child.sendline("12345")
    child.expect("Two-step verification password")
    child.sendline("wrong")
    child.expect("That password is wrong")
    child.expect("Two-step verification password")
    child.sendline("hunter2")
    child.expect(pexpect.EOF)
    child.close()
    output = child.before or ""
    assert child.exitstatus == 0, output
    assert f"SESSION_STRING=***{NEW_SESSION[-4:]}" in output
    assert NEW_SESSION not in output
    assert "hunter2" not in output  # hidden input: never echoed
    values = dotenv_values(env)
    assert values["SESSION_STRING"] == NEW_SESSION
    assert values["CHAT_ID"] == "-100123"
    assert env.read_text().startswith("# ours\n")
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    [backup] = tmp_path.glob(".env.bak-*")
    assert dotenv_values(backup)["SESSION_STRING"] == OLD


def test_without_a_terminal_the_runner_says_so_and_exits_1(tmp_path: Path) -> None:
    env = env_file(tmp_path)
    before = env.read_text()
    done = subprocess.run(
        [sys.executable, "test/auto_session_runner.py", "--write-env", str(env)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "stdin is not a terminal" in done.stderr
    assert "Traceback" not in done.stderr
    assert env.read_text() == before


def test_run_with_a_garbage_session_in_exit_mode_exits_1_with_the_error(
    tmp_path: Path, media: Path
) -> None:
    env = env_file(tmp_path, "not-a-session-at-all", CHAT_ID="-100123", SESSION_RECOVERY="exit")
    (tmp_path / "playlist.txt").write_text(f"{media}/red.mp4\n")
    done = run_cli(tmp_path, {}, "run", "--env-file", str(env), timeout=60)
    assert done.returncode == 1, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if " ERROR " in ln]
    assert len(errors) == 1, done.stderr
    assert "malformed" in errors[0]
    assert "python test/auto_session_runner.py --write-env" in errors[0]
    assert "not-a-session-at-all" not in done.stderr
    assert API_HASH not in done.stderr
    assert "Traceback" not in done.stderr


def test_run_with_a_garbage_session_goes_degraded_and_stays_up(tmp_path: Path, media: Path) -> None:
    env = env_file(tmp_path, "not-a-session-at-all", CHAT_ID="-100123", REAUTH_INTERVAL="0.5")
    (tmp_path / "playlist.txt").write_text(f"{media}/red.mp4\n")
    service = start_service(tmp_path, {}, "run", "--env-file", str(env))
    try:
        service.wait_for(
            r"WARNING .*Degraded mode; SESSION_STRING invalid; run: "
            r"python test/auto_session_runner\.py --write-env",
            30,
        )
        service.wait_for(r"re-authentication try 3 of 3: dead \(malformed\)", 30)
        assert service.proc.poll() is None  # still up: systemd sees a live service
    finally:
        assert service.terminate() == 0
    assert "not-a-session-at-all" not in service.log
    assert "Traceback" not in service.log


def test_session_check_refuses_a_garbage_session_with_exit_1(tmp_path: Path) -> None:
    env_file(tmp_path, "not-a-session-at-all")
    done = run_cli(tmp_path, {}, "session", "check", timeout=60)
    assert done.returncode == 1
    assert "malformed" in done.stderr
    assert "auto_session_runner.py --write-env" in done.stderr
    assert "not-a-session-at-all" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_diag_session_as_the_seeds_run_it_says_why_a_session_is_unusable(tmp_path: Path) -> None:
    env = env_file(tmp_path, "not-a-session-at-all-9z8y")
    done = subprocess.run(
        [sys.executable, "test/diag_session.py", "--env-file", str(env)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 1, done.stderr
    assert f"SESSION_STRING=***9z8y (from {env} or the environment): not a session" in done.stderr
    assert "malformed" in done.stderr
    assert "python test/auto_session_runner.py --write-env" in done.stderr
    assert "not-a-session-at-all" not in done.stderr + done.stdout
    assert API_HASH not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_diagnose_names_the_dc_and_who_we_are_for_a_valid_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = session_string(user_id=42, dc_id=4, key=b"\x07" * 256)
    env = env_file(tmp_path, session)
    telegram = FakeTelegram()

    assert diagnose(env, 5.0, client_factory=telegram.client) == 0

    err = capsys.readouterr().err
    assert f"SESSION_STRING=***{session[-4:]}" in err
    assert "DC 4, account id 42" in err
    assert "session valid: logged in as Alice (id 42)" in err
    assert session not in err

    telegram.revoke(session)
    assert diagnose(env, 5.0, client_factory=telegram.client) == 1
    assert "AUTH_KEY_UNREGISTERED" in capsys.readouterr().err
