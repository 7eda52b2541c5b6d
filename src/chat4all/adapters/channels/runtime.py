"""A hub's channels at run time: every registered plugin's parts, built from its settings.

On the embedded default (no account configured for any channel) every channel runs against its
simulator, served on ``CHAT4ALL_SIMULATOR_PORT`` under ``/<channel>``, with one account,
``sim-bot``; once an account is configured no simulator starts unless ``CHAT4ALL_SIMULATORS``
asks (then each channel without accounts gets its simulator).
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chat4all.config import Settings
from chat4all.plugin import (
    ChannelConnector,
    ChannelPlugin,
    ChannelSettings,
    Limits,
    Poller,
    Received,
    Receiver,
    Simulator,
)
from chat4all.ports import MediaStore
from chat4all.service_layer.accounts import Accounts
from chat4all.simulator.host import running_simulators
from opskit.logs import MASKER

__all__ = ["Channels", "running_channels"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Channels:
    """What the hub needs of its channels, each by name."""

    plugins: Mapping[str, ChannelPlugin[Any]]
    settings: Mapping[str, ChannelSettings]
    """As they run (on a simulator: the simulated account and its URL)."""
    accounts: Accounts
    limits: Mapping[str, Limits]
    connectors: Mapping[str, ChannelConnector]
    receivers: Mapping[str, Receiver]
    simulators: Mapping[str, Simulator]
    simulator_urls: Mapping[str, str]
    """Each simulator's base URL (its provider API's root)."""

    def pollers(self, deliver: Callable[[str, str, Received], Awaitable[object]]) -> list[Poller]:
        """Every channel's pollers (as its settings ask), handing what they fetch to
        ``deliver(channel, account, received)``."""
        return [
            poller
            for name, plugin in self.plugins.items()
            for poller in plugin.pollers(self.settings[name], functools.partial(deliver, name))
        ]


@contextlib.asynccontextmanager
async def running_channels(
    settings: Settings, media: MediaStore | None = None
) -> AsyncIterator[Channels]:
    """The channels of ``settings`` (simulators served meanwhile); connectors closed after."""
    configs = settings.channels
    plugins = {name: config.plugin for name, config in configs.items()}
    effective = {name: config.settings for name, config in configs.items()}
    simulated = (
        [name for name, s in effective.items() if not s.accounts()] if settings.simulators else []
    )
    async with contextlib.AsyncExitStack() as stack:
        simulators: dict[str, Simulator] = {}
        urls: dict[str, str] = {}
        if simulated:
            # the simulators know the simulated accounts: settings first, then the URL they get
            for name in simulated:
                draft = plugins[name].simulated(effective[name], "http://unused")
                simulators[name] = plugins[name].simulator(draft)
                effective[name] = draft
            urls = await stack.enter_async_context(
                running_simulators(simulators, port=settings.SIMULATOR_PORT)
            )
            for name in simulated:
                effective[name] = plugins[name].simulated(effective[name], urls[name])
                log.info("%s simulator on %s (account 'sim-bot')", name, urls[name])
        for values in effective.values():
            MASKER.add(*values.secrets())
        owners = {
            (name, account): config.tenant or settings.DEFAULT_TENANT
            for name, values in effective.items()
            for account, config in values.accounts().items()
        }
        connectors: dict[str, ChannelConnector] = {}
        for name, plugin in plugins.items():
            connectors[name] = plugin.connector(effective[name], media)
            stack.push_async_callback(connectors[name].close)
        yield Channels(
            plugins=plugins,
            settings=effective,
            accounts=Accounts(owners, plugins),
            limits={name: plugin.limits for name, plugin in plugins.items()},
            connectors=connectors,
            receivers={name: plugin.receiver(effective[name]) for name, plugin in plugins.items()},
            simulators=simulators,
            simulator_urls=urls,
        )
