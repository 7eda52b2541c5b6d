"""The Makefile's test targets fail when pytest collects nothing (its exit code 5), and `make
pytest`, which runs the suite as two pytest processes side by side, fails when either fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTHING = "-k nothing_is_named_like_this"


def make(*args: str) -> subprocess.CompletedProcess[str]:
    """``make args`` in the checkout, as a developer runs it, whatever make this suite runs
    under: none of its settings (`make pytest PYTEST_ARGS=tests/test_make.py` exports
    PYTEST_ARGS, which would make each `make pytest` here run this file again)."""
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL"}}
    return subprocess.run(
        [
            "make",
            # the venv, the wheelhouse and the contract tools are there: this test runs in it
            *("-o", "deps", "-o", ".cache/wheelhouse/.complete", "-o", ".cache/node/.installed"),
            f"BIN={Path(sys.executable).parent}",
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_make_fails_when_pytest_collects_nothing() -> None:
    done = make("unit", "UNIT_TESTS=tests/opskit", f"PYTEST_ARGS={NOTHING}")
    assert "deselected" in done.stdout
    assert done.returncode != 0
    assert "Error 5" in done.stderr


@pytest.mark.parametrize("empty", ["PYTEST_COVERED", "PYTEST_OTHERS"])
def test_make_pytest_fails_when_either_of_its_processes_collects_nothing(empty: str) -> None:
    parts = {"PYTEST_COVERED": "tests/opskit", "PYTEST_OTHERS": "tests/opskit"}
    parts[empty] += f" {NOTHING}"
    variables = (f"{name}={value}" for name, value in parts.items())
    done = make("pytest", "COVERAGE=", "PYTEST_ARGS=", *variables)
    # both ran to their end, and both outputs are there
    assert "2 passed" in done.stdout
    assert "2 deselected" in done.stdout
    assert done.returncode != 0
    assert "Error 5" in done.stderr
