"""How a hub finds its channels and builds them from settings: the registry (entry points or
injected plugins), the per-channel settings, the simulators of the embedded default, and the
rule that the core names no channel."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import chat4all
from chat4all.adapters.channels.runtime import running_channels
from chat4all.adapters.channels.telegram import CHANNEL as TELEGRAM
from chat4all.adapters.channels.telegram import SIMULATOR_TOKEN
from chat4all.config import load_settings
from chat4all.errors import InvalidRequest, NotFound
from chat4all.plugin import SIMULATOR_ACCOUNT
from chat4all.registry import Registry
from tests.chat4all.channels import echo
from tests.tgstream.harness import free_port

SRC = Path(chat4all.__file__).parent
CHANNEL_PACKAGES = ("adapters/channels/",)
NAMES = re.compile(r"telegram|whatsapp|messenger|instagram", re.IGNORECASE)


def test_no_module_outside_the_channel_packages_names_a_channel() -> None:
    naming = {
        path.relative_to(SRC).as_posix()
        for path in SRC.rglob("*.py*")
        if path.suffix in (".py", ".pyi")
        and not path.relative_to(SRC).as_posix().startswith(CHANNEL_PACKAGES)
        and NAMES.search(path.read_text())
    }
    assert naming == set(), "the core names a channel"


def test_installed_channels_are_found_through_their_entry_points() -> None:
    found = Registry.discover()
    assert "telegram" in found.names()
    assert found["telegram"] is TELEGRAM


def test_a_plugin_is_registered_once_under_a_well_formed_name() -> None:
    with pytest.raises(InvalidRequest, match="two channel plugins are named 'echo'"):
        Registry([echo.CHANNEL, echo.EchoChannel()])

    class Shouting(echo.EchoChannel):
        name = "ECHO"

    with pytest.raises(InvalidRequest, match="lower-case"):
        Registry([Shouting()])
    with pytest.raises(NotFound, match="no channel 'fax'"):
        Registry([echo.CHANNEL])["fax"]


async def test_the_embedded_default_runs_every_channel_on_its_simulator(tmp_path: Path) -> None:
    settings = load_settings(None, Registry([TELEGRAM, echo.CHANNEL]), SIMULATOR_PORT=0)
    async with running_channels(settings) as channels:
        assert sorted(channels.simulators) == ["echo", "telegram"]
        assert channels.accounts.of("default") == {
            "echo": (SIMULATOR_ACCOUNT,),
            "telegram": (SIMULATOR_ACCOUNT,),
        }
        assert channels.limits["echo"] is echo.CHANNEL.limits
        # one port, one root per channel
        [port] = {url.rsplit("/", 1)[0] for url in channels.simulator_urls.values()}
        async with httpx.AsyncClient() as client:
            me = await client.post(f"{port}/telegram/bot{SIMULATOR_TOKEN}/getMe")
        assert me.json()["ok"] is True


async def test_a_configured_account_turns_the_simulators_off_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "CHAT4ALL_TELEGRAM_ACCOUNTS", '{"support": {"token": "1:real", "tenant": "acme"}}'
    )
    registry = Registry([TELEGRAM, echo.CHANNEL])
    async with running_channels(load_settings(None, registry, SIMULATOR_PORT=0)) as channels:
        assert channels.simulators == {}
        assert channels.accounts.of("acme") == {"telegram": ("support",)}
        assert channels.accounts.channels() == ("echo", "telegram")
    asked = load_settings(None, registry, SIMULATOR_PORT=0, SIMULATORS=True)
    async with running_channels(asked) as channels:
        assert list(channels.simulators) == ["echo"]  # the channel without an account
        assert channels.accounts.of("acme") == {"telegram": ("support",)}
        assert channels.accounts.of("default") == {"echo": (SIMULATOR_ACCOUNT,)}


def chat4all_cli(*args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "chat4all", *args],
        env={"PATH": os.environ["PATH"], **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_serve_exits_2_naming_a_bad_channel_setting(tmp_path: Path) -> None:
    served = chat4all_cli(
        "serve",
        CHAT4ALL_DATA_DIR=str(tmp_path),
        CHAT4ALL_TELEGRAM_ACCOUNTS='{"support": {"token": "1:very-secret", "tenat": "acme"}}',
    )
    _, stderr = served.communicate(timeout=60)
    assert served.returncode == 2, stderr
    assert "CHAT4ALL_TELEGRAM_ACCOUNTS.support.tenat" in stderr
    assert "very-secret" not in stderr
    assert "Traceback" not in stderr


async def test_the_simulator_command_serves_each_channel_under_its_name() -> None:
    port = free_port()
    wrong = chat4all_cli("simulator", "--channel", "fax")
    _, stderr = wrong.communicate(timeout=60)
    assert wrong.returncode == 2
    assert "no channel fax" in stderr
    served = chat4all_cli("simulator", "--port", str(port))
    try:
        url = f"http://127.0.0.1:{port}/telegram/bot{SIMULATOR_TOKEN}/getMe"
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    answer = await client.post(url)
                    break
                except httpx.TransportError:
                    assert served.poll() is None, served.communicate()[1]
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the simulator did not start")
        assert answer.json()["ok"] is True
    finally:
        served.terminate()
        served.communicate(timeout=30)
