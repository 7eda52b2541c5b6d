"""`chat4all keys`, `audit` and `migrate` as an operator runs them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def cli(data: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``chat4all *args`` run as an operator runs it, on the hub in ``data`` (``env``: more
    variables); the code under test (``PYTHONPATH``), not another installed copy."""
    code = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}
    return subprocess.run(
        [sys.executable, "-m", "chat4all", *args],
        env={"PATH": os.environ["PATH"], "CHAT4ALL_DATA_DIR": str(data), **code, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_and_the_audit_log_from_the_command_line(tmp_path: Path) -> None:
    created = cli(tmp_path, "keys", "create", "--tenant", "t1", "--role", "reader", "--name", "ci")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("c4a_")
    key_id = key.split("_")[1]
    listed = cli(tmp_path, "keys", "list").stdout
    assert f"{key_id}\tt1\treader\tactive\tci" in listed
    assert key.split("_", 2)[2] not in listed  # the secret is never shown again
    assert cli(tmp_path, "keys", "revoke", key_id).returncode == 0
    missing = cli(tmp_path, "keys", "revoke", "nope")
    assert missing.returncode == 1
    assert "no active key 'nope'" in missing.stderr
    events = cli(tmp_path, "audit", "list").stdout.splitlines()
    assert [line.split("\t")[2] for line in events] == ["key_revoked", "key_created"]
    assert cli(tmp_path, "audit", "verify").returncode == 0
    with sqlite3.connect(tmp_path / "chat4all.db") as db:
        db.execute("UPDATE audit_log SET detail = 'admin' WHERE id = 1")
    tampered = cli(tmp_path, "audit", "verify")
    assert tampered.returncode == 1
    assert "entry 1 does not chain" in tampered.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "chat4all", "keys", "list"],
        env={"PATH": os.environ["PATH"], "CHAT4ALL_PORT": "not-a-port"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "CHAT4ALL_PORT" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_migrate_reports_the_revision_and_an_unreachable_database_is_exit_3(
    tmp_path: Path,
) -> None:
    first = cli(tmp_path, "migrate")
    assert first.returncode == 0, first.stderr
    assert "migrated from empty to revision" in first.stderr
    again = cli(tmp_path, "migrate")
    assert "database schema is current" in again.stderr
    down = cli(
        tmp_path,
        "migrate",
        CHAT4ALL_DATABASE_URL="postgresql+asyncpg://hub:s3cr3t-pw@127.0.0.1:1/hub",
    )
    assert down.returncode == 3
    assert "cannot open or migrate the database" in down.stderr
    assert "s3cr3t-pw" not in down.stderr  # the password is never shown
    assert "Traceback" not in down.stderr
    unwritable = cli(tmp_path, "keys", "list", CHAT4ALL_DATA_DIR="/proc/no-such-place")
    assert unwritable.returncode == 3
    assert "Traceback" not in unwritable.stderr
