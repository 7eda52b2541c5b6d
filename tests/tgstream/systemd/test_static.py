"""Static checks of the deployment files: shellcheck, systemd-analyze verify and security."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCRIPTS = sorted(
    [
        *ROOT.glob("scripts/*.sh"),
        *ROOT.glob("ci/*.sh"),
        ROOT / ".ci" / "run",
        *ROOT.glob("tests/tgstream/systemd/*.sh"),
    ]
)
UNITS = ("tg_video_streamer.service", "yt-dlp-update.service", "yt-dlp-update.timer")


def test_shellcheck_is_clean_on_every_script() -> None:
    assert len(SCRIPTS) >= 5
    done = subprocess.run(
        ["shellcheck", *map(str, SCRIPTS)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout


def test_every_unit_verifies_clean(tmp_path: Path) -> None:
    # Rendered as remote_deploy.sh renders them, for a root whose executables exist.
    root = tmp_path / "opt"
    for exe in ("current/venv/bin/tgstream", "current/scripts/yt-dlp-update.sh"):
        path = root / exe
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    rendered = []
    for unit in UNITS:
        text = (ROOT / "deploy" / "systemd" / unit).read_text()
        target = tmp_path / unit
        target.write_text(text.replace("/opt/tg_video_streamer", str(root)))
        rendered.append(str(target))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *rendered],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_the_service_unit_scores_at_most_2() -> None:
    done = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            str(ROOT / "deploy" / "systemd" / "tg_video_streamer.service"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert match, done.stdout + done.stderr
    score = float(match.group(1))
    print(f"systemd-analyze security: {score}")
    assert score <= 2.0, done.stdout
