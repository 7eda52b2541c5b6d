"""Send throughput of each channel's connector through its simulator, side by side.

The simulators run in their own process (``serve``: every benched channel on one port, as
``chat4all simulator`` serves them), the connectors in this one: 32 concurrent senders, closed
loop, text messages to 64 recipients, through each plugin's own ``connector`` built on its
``simulated`` settings (per-number pacing lifted where a channel has it, so the figure is the
connector's and the simulator's, not a configured rate). Windows alternate between channels
(A B B A ...) and the median of each channel's windows is reported, with its ratio to
Telegram's, from the same run: compare ratios, not absolute figures.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
from tests.tgstream.harness import free_port

from bench.common import provenance
from chat4all.adapters.channels.telegram import CHANNEL as TELEGRAM
from chat4all.adapters.channels.whatsapp import CHANNEL as WHATSAPP
from chat4all.config import load_settings
from chat4all.domain.model import Content, Conversation, DeliveryStatus, Message
from chat4all.plugin import SIMULATOR_ACCOUNT, ChannelPlugin
from chat4all.registry import Registry
from chat4all.simulator.host import running_simulators

PLUGINS: tuple[ChannelPlugin[Any], ...] = (TELEGRAM, WHATSAPP)
"""The channels benched (a new channel: one more entry)."""
MESSAGES = 2000
CONCURRENCY = 32
ROUNDS = 3
_OVERRIDES = {"WHATSAPP_RATE": 1e6}
"""Per-number pacing off: the bench measures the connector, not the configured rate."""


def _settings() -> dict[str, Any]:
    config = load_settings(None, Registry(PLUGINS), **_OVERRIDES)
    return {p.name: config.channels[p.name].settings for p in PLUGINS}


def serve(port: int) -> None:
    """Every benched channel's simulator on ``port`` until killed (the bench's other process)."""

    async def forever() -> None:
        settings = _settings()
        simulators = {
            p.name: p.simulator(p.simulated(settings[p.name], "http://unused")) for p in PLUGINS
        }
        async with running_simulators(simulators, port=port):
            await asyncio.Event().wait()

    asyncio.run(forever())


async def _window(plugin: ChannelPlugin[Any], connector: Any, n: int) -> float:
    numbers = iter(range(n))

    async def sender() -> None:
        for i in numbers:
            recipient = str(100_000 + i % 64)
            conversation = Conversation("c", "t", plugin.name, SIMULATOR_ACCOUNT, recipient)
            content = Content(text=f"message {i}")
            message = Message(f"m{i}", "t", "c", i, "outbound", content, DeliveryStatus.QUEUED, 0)
            await connector.send(conversation, message)

    began = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))
    return n / (time.perf_counter() - began)


async def _measure(base: str) -> dict[str, list[float]]:
    settings = _settings()
    connectors = {
        p.name: p.connector(p.simulated(settings[p.name], f"{base}/{p.name}"), None)
        for p in PLUGINS
    }
    try:
        for plugin in PLUGINS:  # warm up: connections, first-call costs
            await _window(plugin, connectors[plugin.name], 200)
        rates: dict[str, list[float]] = {p.name: [] for p in PLUGINS}
        for round_ in range(ROUNDS):
            order = PLUGINS if round_ % 2 == 0 else tuple(reversed(PLUGINS))
            for plugin in order:
                rates[plugin.name].append(await _window(plugin, connectors[plugin.name], MESSAGES))
        return rates
    finally:
        for connector in connectors.values():
            await connector.close()


def run(machine: str) -> str:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", f"from bench.channels_bench import serve; serve({port})"]
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the simulators did not start") from None
                time.sleep(0.1)
        rates = asyncio.run(_measure(base))
    finally:
        server.terminate()
        server.wait(timeout=10)
    reference = statistics.median(rates[TELEGRAM.name])
    rows = [
        "| channel | msg/s (median of windows) | windows | vs Telegram |",
        "|---|---:|---|---:|",
    ]
    for plugin in PLUGINS:
        median = statistics.median(rates[plugin.name])
        windows = ", ".join(f"{r:.0f}" for r in rates[plugin.name])
        rows.append(f"| {plugin.name} | {median:.0f} | {windows} | {median / reference:.2f} |")
    table = "\n".join(rows)
    print(table)
    return (
        f"{provenance('`make bench-channels` (`python -m bench channels`)', machine)}\n\n"
        f"{table}\n\n"
        f"How: {MESSAGES} text messages per window, {CONCURRENCY} concurrent senders, "
        f"{ROUNDS} windows per channel alternating (A B B A ...), each channel's connector "
        "(built by its plugin on its simulated settings) in this process, every simulator in "
        "another (one port, as `chat4all simulator`). The per-number pacing of WhatsApp (80 "
        "msg/s by default) is lifted: the figure is what the connector and the simulator "
        "sustain. Both speak aiohttp (the Graph client ran ~480 msg/s on httpx in the same bench: httpcore's pool scans every connection for every waiting request)."
    )
