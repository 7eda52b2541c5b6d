"""The channels this hub knows: plugins found through the ``chat4all.channels`` entry points.

A channel package declares itself in its distribution's metadata::

    [project.entry-points."chat4all.channels"]
    mychannel = "mypackage.channel:CHANNEL"

(the name on the left is the channel's name; the object on the right a
:class:`~chat4all.plugin.ChannelPlugin`). Tests build a :class:`Registry` from plugin objects
directly: that is the injection point.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from typing import Any, Final

from chat4all.errors import InvalidRequest, NotFound
from chat4all.plugin import NAME, ChannelPlugin

__all__ = ["GROUP", "Registry"]

GROUP: Final = "chat4all.channels"


class Registry:
    """Channel plugins by name (sorted); a name is registered once."""

    def __init__(self, plugins: Iterable[ChannelPlugin[Any]]) -> None:
        found: dict[str, ChannelPlugin[Any]] = {}
        for plugin in plugins:
            if not NAME.fullmatch(plugin.name):
                raise InvalidRequest(
                    f"channel plugin {type(plugin).__module__}: name {plugin.name!r} must be "
                    "lower-case letters, digits or _, a letter first, at most 16",
                    field="channel",
                )
            if plugin.name in found:
                raise InvalidRequest(
                    f"two channel plugins are named {plugin.name!r} "
                    f"({type(found[plugin.name]).__module__}, {type(plugin).__module__}): "
                    "uninstall one",
                    field="channel",
                )
            found[plugin.name] = plugin
        self._plugins = dict(sorted(found.items()))

    @classmethod
    def discover(cls) -> Registry:
        """Every plugin installed (the ``chat4all.channels`` entry points)."""
        plugins: list[ChannelPlugin[Any]] = []
        for entry in entry_points(group=GROUP):
            try:
                plugin = entry.load()
            except Exception as exc:  # a broken plugin: say which, not a traceback
                raise InvalidRequest(
                    f"channel plugin {entry.name!r} ({entry.value}) cannot be loaded: "
                    f"{type(exc).__name__}: {exc}; reinstall or uninstall it",
                    field="channel",
                ) from None
            if plugin.name != entry.name:
                raise InvalidRequest(
                    f"channel plugin {entry.value} is registered as {entry.name!r} but is named "
                    f"{plugin.name!r}; the entry point's name must be the channel's",
                    field="channel",
                )
            plugins.append(plugin)
        return cls(plugins)

    def names(self) -> tuple[str, ...]:
        return tuple(self._plugins)

    def __getitem__(self, name: str) -> ChannelPlugin[Any]:
        plugin = self._plugins.get(name)
        if plugin is None:
            raise NotFound(f"no channel {name!r} here; channels: {', '.join(self._plugins)}")
        return plugin

    def __iter__(self) -> Iterator[ChannelPlugin[Any]]:
        return iter(self._plugins.values())

    def __len__(self) -> int:
        return len(self._plugins)
