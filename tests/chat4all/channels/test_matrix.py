"""The API manual's channel matrix says what each channel's plugin declares."""

from __future__ import annotations

from pathlib import Path

import pytest

from chat4all.adapters.channels.instagram import CHANNEL as INSTAGRAM
from chat4all.adapters.channels.messenger import CHANNEL as MESSENGER
from chat4all.adapters.channels.telegram import CHANNEL as TELEGRAM
from chat4all.adapters.channels.whatsapp import CHANNEL as WHATSAPP

MANUAL = Path(__file__).resolve().parents[3] / "docs" / "chat4all-api.md"
PLUGINS = [TELEGRAM, WHATSAPP, MESSENGER, INSTAGRAM]


def row(name: str) -> list[str]:
    section = MANUAL.read_text().split("## Channels\n", 1)[1].split("\n## ", 1)[0]
    [line] = [ln for ln in section.splitlines() if ln.startswith(f"| {name} |")]
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


@pytest.mark.parametrize(("column", "plugin"), list(enumerate(PLUGINS)))
def test_the_matrix_is_what_the_plugins_declare(column: int, plugin: object) -> None:
    limits = plugin.limits  # type: ignore[attr-defined]
    assert row("sends")[column] == ", ".join(limits.sends())
    assert row("attachment kinds")[column] == ", ".join(sorted(limits.kinds))
    actions = ", ".join(sorted(str(a) for a in limits.actions)) or "none"
    assert row("actions")[column] == actions
