"""chat4all's alert rules: valid, and each alert has a promtool unit test (firing and not)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Final

MONITORING: Final = Path(__file__).parents[3] / "deploy" / "monitoring"


def test_alert_rules_are_valid_and_each_alert_has_a_unit_test() -> None:
    for command in (
        ["promtool", "check", "rules", "chat4all-alerts.yml"],
        ["promtool", "test", "rules", "chat4all-alerts.test.yml"],
    ):
        done = subprocess.run(command, cwd=MONITORING, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    alerts = set(re.findall(r"- alert: (\w+)", (MONITORING / "chat4all-alerts.yml").read_text()))
    tested = set(
        re.findall(r"alertname: (\w+)", (MONITORING / "chat4all-alerts.test.yml").read_text())
    )
    assert alerts == tested == {"Chat4allChannelAccountPaused", "Chat4allLoadShedding"}
