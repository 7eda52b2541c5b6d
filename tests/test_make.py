"""The Makefile's test targets fail when pytest collects nothing (its exit code 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_make_fails_when_pytest_collects_nothing() -> None:
    done = subprocess.run(
        [
            "make",
            "-o",
            "deps",  # the venv is there: this test runs in it
            f"BIN={Path(sys.executable).parent}",
            "unit",
            "UNIT_TESTS=tests/opskit",
            "PYTEST_ARGS=-k nothing_is_named_like_this",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "deselected" in done.stdout
    assert done.returncode != 0
    assert "Error 5" in done.stderr
