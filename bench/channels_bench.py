"""Send throughput of each channel through its simulator, in one run (``python -m bench
channels``).

For each channel plugin (the installed ones, and those of this tree not yet registered), its
simulator is served on loopback (uvicorn, one process: this one) and its connector, built from
the plugin's simulated settings as the hub builds it, sends one-text messages with ``SENDERS``
concurrent senders, closed loop, for ``SECONDS`` s, each to its own recipient. Channels take
their windows in turns, twice (a, b, c, ..., c, b, a), and each one's median is reported: the
connector's and the simulator's cost together, so compare channels within one run.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import statistics
import time
from typing import Any

from bench.common import provenance
from chat4all.config import load_settings
from chat4all.domain.model import Content, Conversation, DeliveryStatus, Message
from chat4all.plugin import SIMULATOR_ACCOUNT, ChannelPlugin
from chat4all.registry import Registry
from chat4all.simulator.host import running_simulators

SECONDS = float(os.environ.get("CHAT4ALL_BENCH_CHANNEL_SECONDS", "4"))
SENDERS = int(os.environ.get("CHAT4ALL_BENCH_CHANNEL_SENDERS", "16"))
_MODULES = ("telegram", "whatsapp", "messenger", "instagram")


def plugins() -> list[ChannelPlugin[Any]]:
    found = {p.name: p for p in Registry.discover()}
    for name in _MODULES:
        if name in found:
            continue
        try:
            module = importlib.import_module(f"chat4all.adapters.channels.{name}")
        except ImportError:
            continue
        found[name] = module.CHANNEL
    return [found[n] for n in sorted(found)]


async def _window(plugin: ChannelPlugin[Any]) -> float:
    configured = load_settings(None, Registry([plugin])).channels[plugin.name].settings
    simulator = plugin.simulator(plugin.simulated(configured, "http://unused"))
    async with running_simulators({plugin.name: simulator}) as urls:
        connector = plugin.connector(plugin.simulated(configured, urls[plugin.name]), None)
        sent = 0
        deadline = time.monotonic() + SECONDS

        async def sender(n: int) -> None:
            nonlocal sent
            conversation = Conversation(f"c{n}", "t", plugin.name, SIMULATOR_ACCOUNT, f"{n + 1}")
            seq = 0
            while time.monotonic() < deadline:
                seq += 1
                message = Message(
                    f"m{n}-{seq}", "t", f"c{n}", seq, "outbound",
                    Content(text=f"bench {seq}"), DeliveryStatus.QUEUED, time.time(),
                )  # fmt: skip
                await connector.send(conversation, message)
                sent += 1

        began = time.monotonic()
        try:
            await asyncio.gather(*(sender(n) for n in range(SENDERS)))
        finally:
            await connector.close()
        return sent / (time.monotonic() - began)


async def measure() -> dict[str, list[float]]:
    chosen = plugins()
    rates: dict[str, list[float]] = {p.name: [] for p in chosen}
    for plugin in [*chosen, *reversed(chosen)]:
        rates[plugin.name].append(await _window(plugin))
    return rates


def run(machine: str) -> str:
    rates = asyncio.run(measure())
    rows = [
        "| channel | msg/s, each window in order | median msg/s |",
        "|---|---|---|",
        *(
            f"| {name} | {', '.join(f'{r:.0f}' for r in values)} | "
            f"{statistics.median(values):.0f} |"
            for name, values in rates.items()
        ),
    ]
    table = "\n".join(rows)
    print(table)
    return (
        f"{provenance('`make bench-channels` (`python -m bench channels`)', machine)}\n\n{table}\n\n"
        f"{SENDERS} concurrent senders, closed loop, {SECONDS:g} s windows, channels in turns "
        "twice (forward, then backward); each channel's connector (as the hub builds it) "
        "against its simulator on loopback in the same process, so the figure is the "
        "connector's and the simulator's cost together: compare channels within one run. "
        "WhatsApp's connector paces each phone number (CHAT4ALL_WHATSAPP_RATE, 80 msg/s by "
        "default, the Cloud API's throughput), so its figure is that pace; WhatsApp, "
        "Messenger and Instagram go through the shared Graph client, Telegram through its own "
        "(both on aiohttp)."
    )
