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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

from chat4all.config import Settings
from chat4all.plugin import (
    SIMULATOR_ACCOUNT,
    ChannelConnector,
    ChannelPlugin,
    ChannelSettings,
    Limits,
    PausableConnector,
    Poller,
    Received,
    Receiver,
    Simulator,
)
from chat4all.ports import MediaStore
from chat4all.service_layer.accounts import Accounts
from chat4all.simulator.host import running_simulators
from opskit.logs import MASKER

__all__ = ["Channels", "build_channels", "running_channels"]

log = logging.getLogger(__name__)

_UNSERVED: Final = "http://127.0.0.1:9/not-served-yet"
"""A simulated channel's API URL until its simulator is served (port 9: discard)."""


class Channels:
    """What the hub needs of its channels, each by name. Built without a socket
    (:func:`build_channels`); :meth:`serving_simulators` then serves the simulators and points
    the simulated channels at them (the ``connectors`` mapping is updated in place, so the
    dispatcher holding it sees the change)."""

    def __init__(
        self,
        plugins: Mapping[str, ChannelPlugin[Any]],
        settings: Mapping[str, ChannelSettings],
        simulated: Iterable[str],
        default_tenant: str,
        media: MediaStore | None,
    ) -> None:
        self.plugins = dict(plugins)
        self._media = media
        self.simulators: dict[str, Simulator] = {}
        """The simulators of the simulated channels (none once an account is configured,
        unless ``CHAT4ALL_SIMULATORS`` asks)."""
        self.simulator_urls: dict[str, str] = {}
        """Each simulator's base URL (its provider API's root), once served."""
        self.settings: dict[str, ChannelSettings] = dict(settings)
        """As they run (on a simulator: the simulated account, and its URL once served)."""
        for name in simulated:
            self.settings[name] = self.plugins[name].simulated(self.settings[name], _UNSERVED)
            self.simulators[name] = self.plugins[name].simulator(self.settings[name])
        for values in self.settings.values():
            MASKER.add(*values.secrets())
        owners = {
            (name, account): config.tenant or default_tenant
            for name, values in self.settings.items()
            for account, config in values.accounts().items()
        }
        self.accounts = Accounts(owners, self.plugins)
        self.limits: dict[str, Limits] = {n: p.limits for n, p in self.plugins.items()}
        self.receivers: dict[str, Receiver] = {
            n: p.receiver(self.settings[n]) for n, p in self.plugins.items()
        }
        self.connectors: dict[str, ChannelConnector] = {
            n: p.connector(self.settings[n], media) for n, p in self.plugins.items()
        }

    @contextlib.asynccontextmanager
    async def serving_simulators(
        self, host: str = "127.0.0.1", port: int = 0
    ) -> AsyncIterator[dict[str, str]]:
        """The simulators on ``port`` (each under ``/<channel>``) for the duration, the
        simulated channels' settings and connectors pointed at them; yields their URLs."""
        if not self.simulators:
            yield {}
            return
        async with running_simulators(self.simulators, host, port) as urls:
            for name, url in urls.items():
                self.settings[name] = self.plugins[name].simulated(self.settings[name], url)
                old = self.connectors[name]
                self.connectors[name] = self.plugins[name].connector(
                    self.settings[name], self._media
                )
                await old.close()
                log.info("%s simulator on %s (account %r)", name, url, SIMULATOR_ACCOUNT)
            self.simulator_urls = urls
            try:
                yield urls
            finally:
                self.simulator_urls = {}

    def pollers(self, deliver: Callable[[str, str, Received], Awaitable[object]]) -> list[Poller]:
        """Every channel's pollers (as its settings ask), handing what they fetch to
        ``deliver(channel, account, received)``."""
        return [
            poller
            for name, plugin in self.plugins.items()
            for poller in plugin.pollers(self.settings[name], functools.partial(deliver, name))
        ]

    def pausable(self, channel: str) -> PausableConnector | None:
        """``channel``'s connector when its accounts pause on a refused token, else ``None``."""
        connector = self.connectors.get(channel)
        return connector if isinstance(connector, PausableConnector) else None

    def paused(self) -> dict[tuple[str, str], str | None]:
        """Every configured account of the channels that pause accounts: why it is paused, or
        ``None`` (it is not)."""
        states: dict[tuple[str, str], str | None] = {}
        for name, values in self.settings.items():
            connector = self.pausable(name)
            if connector is None:
                continue
            paused = connector.paused()
            for account in values.accounts():
                states[(name, account)] = paused.get(account)
        return states

    def reload(self, settings: Settings) -> dict[tuple[str, str], str]:
        """Apply what may change without a restart from ``settings`` (re-read): each account's
        replaced token (a paused account resumes with it); what changed. Accounts added,
        removed or moved to another tenant, and other settings, are logged as taking a
        restart; a simulated channel keeps its simulator's settings."""
        changed: dict[tuple[str, str], str] = {}
        for name, config in settings.channels.items():
            if name not in self.plugins or name in self.simulators:
                continue
            old, new = self.settings[name], config.settings
            MASKER.add(*new.secrets())
            before = {a: c.tenant for a, c in old.accounts().items()}
            after = {a: c.tenant for a, c in new.accounts().items()}
            if before != after:
                log.warning(
                    "%s: accounts added, removed or moved to another tenant (%s -> %s) take a "
                    "restart; only replaced tokens are applied now",
                    name,
                    ", ".join(sorted(before)) or "none",
                    ", ".join(sorted(after)) or "none",
                )
            connector = self.pausable(name)
            if connector is None:
                continue
            for account, what in connector.reload(new).items():
                changed[(name, account)] = what
                log.warning("%s account %r: %s", name, account, what)
        return changed

    async def close(self) -> None:
        """Close the connectors (their connections)."""
        for connector in self.connectors.values():
            await connector.close()


def build_channels(settings: Settings, media: MediaStore | None = None) -> Channels:
    """Every channel of ``settings`` (their plugins and settings, :attr:`Settings.channels`);
    on the embedded default, or when ``CHAT4ALL_SIMULATORS`` asks, each channel without an
    account is simulated. Opens no socket."""
    configs = settings.channels
    values = {name: config.settings for name, config in configs.items()}
    simulated = [n for n, v in values.items() if not v.accounts()] if settings.simulators else []
    return Channels(
        {name: config.plugin for name, config in configs.items()},
        values,
        simulated,
        settings.DEFAULT_TENANT,
        media,
    )


@contextlib.asynccontextmanager
async def running_channels(
    settings: Settings, media: MediaStore | None = None
) -> AsyncIterator[Channels]:
    """:func:`build_channels` with the simulators served on ``CHAT4ALL_SIMULATOR_PORT`` for the
    duration; the connectors closed after."""
    channels = build_channels(settings, media)
    try:
        async with channels.serving_simulators(port=settings.SIMULATOR_PORT):
            yield channels
    finally:
        await channels.close()
