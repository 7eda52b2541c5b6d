"""Locked, atomic .env updates: what is kept, the backup, and writers racing each other."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest
from dotenv import dotenv_values

from opskit.envfile import EnvFileError, env_lock, lock_path, update_env

TEMPLATE = """\
# tgstream settings
API_ID=12345
API_HASH="0123456789abcdef0123456789abcdef"

# the session
SESSION_STRING=old-session-value
FFMPEG_ARGS="-b:v 1500k -preset veryfast"
"""


def test_an_update_keeps_comments_order_other_keys_and_mode(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(TEMPLATE)
    env.chmod(0o600)
    backup = update_env(env, {"SESSION_STRING": "new-session-value"})
    text = env.read_text()
    assert text == TEMPLATE.replace("old-session-value", "new-session-value")
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert backup is not None
    assert backup.read_text() == TEMPLATE
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert dotenv_values(env)["FFMPEG_ARGS"] == "-b:v 1500k -preset veryfast"


def test_new_keys_are_appended_and_odd_values_quoted(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    update_env(env, {"A": "plain", "B": 'has "quotes" and spaces'})
    assert stat.S_IMODE(env.stat().st_mode) == 0o600  # a new file is private too
    assert dotenv_values(env) == {"A": "plain", "B": 'has "quotes" and spaces'}


def test_only_the_newest_five_backups_are_kept(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=0\n")
    for n in range(7):
        (tmp_path / f".env.bak-2001010{n}T000000Z").write_text(f"A={n}\n")
    made = update_env(env, {"A": "1"})
    kept = sorted(p.name for p in tmp_path.glob(".env.bak-*"))
    assert len(kept) == 5
    assert made is not None
    assert made.name in kept
    assert ".env.bak-20010100T000000Z" not in kept  # the oldest went first


def test_a_held_lock_makes_the_writer_wait_then_fail_with_the_reason(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    with env_lock(env), pytest.raises(EnvFileError, match="being changed by another process"):
        update_env(env, {"A": "2"}, lock_timeout=0.2)
    assert env.read_text() == "A=1\n"
    assert lock_path(env) == tmp_path / ".env.lock"


def _writer(env: str, key: str, rounds: int) -> None:
    for n in range(rounds):
        update_env(Path(env), {key: str(n)}, backup=n % 10 == 0)


def _lock_holder(env: str, rounds: int) -> None:
    # What the deploy script does: take the lock, read, write a temporary file, rename.
    path = Path(env)
    for n in range(rounds):
        with env_lock(path):
            text = path.read_text()
            time.sleep(0.002)
            tmp = path.with_name(".env.deploy")
            tmp.write_text(text.replace(f"DEPLOY={n}", f"DEPLOY={n + 1}"))
            os.replace(tmp, path)


def test_racing_writers_lose_no_update_and_the_file_always_parses(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# header\nDEPLOY=0\n")
    rounds = 40
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(env), f"K{i}", rounds)) for i in range(3)]
    procs.append(ctx.Process(target=_lock_holder, args=(str(env), rounds)))
    for p in procs:
        p.start()
    seen_bad = 0
    while any(p.is_alive() for p in procs):
        values = dotenv_values(env)  # a reader never takes the lock: it must see whole files
        if "DEPLOY" not in values:
            seen_bad += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    final = dotenv_values(env)
    assert seen_bad == 0
    assert final == {"DEPLOY": str(rounds), **{f"K{i}": str(rounds - 1) for i in range(3)}}
    assert env.read_text().startswith("# header\n")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_values_read_back_exactly_and_export_prefixes_stay(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("export SESSION_STRING=old\n")
    update_env(env, {"SESSION_STRING": "new", "X": 'a "b" c'})
    assert env.read_text().startswith("export SESSION_STRING=new\n")
    assert dotenv_values(env) == {"SESSION_STRING": "new", "X": 'a "b" c'}
    for refused in ("it's", "a${HOME}b", "two\nlines"):
        with pytest.raises(EnvFileError, match="cannot be written safely"):
            update_env(env, {"X": refused})
    assert dotenv_values(env)["X"] == 'a "b" c'


def test_a_symlinked_env_is_updated_where_it_lives(tmp_path: Path) -> None:
    shared = tmp_path / "shared.env"
    shared.write_text("A=1\n")
    link = tmp_path / ".env"
    link.symlink_to(shared)
    update_env(link, {"A": "2"}, backup=False)
    assert link.is_symlink()
    assert shared.read_text() == "A=2\n"
