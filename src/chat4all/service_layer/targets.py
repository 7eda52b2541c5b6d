"""Where the hub may send a client's webhook: the rules on a subscription URL.

A URL is ``http`` or ``https`` with a host and no credentials in it. By default its host must be
a public address: loopback, private, link-local and other non-global addresses are refused, at
subscription (an address written in the URL, or ``localhost``) and again at each delivery, after
DNS resolution (a name may resolve to an internal address, or start to later). An on-premises
deployment whose receivers live on the internal network allows them with
``CHAT4ALL_WEBHOOK_ALLOW_PRIVATE``.

The delivery then connects to the very address that was checked (:class:`Target`: the name
stays in ``Host`` and in TLS's server name, so certificates are verified against it): a name
that resolves to a public address for the check and to an internal one for the connection
(DNS rebinding) gains nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import httpx

from chat4all.errors import InvalidRequest

__all__ = ["TargetPolicy", "Target", "Resolver", "UnsafeTarget", "resolve"]

Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``; raises ``OSError`` when the name does not resolve."""

_HOST: Final = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$"
)
_ALLOW: Final = "CHAT4ALL_WEBHOOK_ALLOW_PRIVATE"


class UnsafeTarget(Exception):
    """A delivery's host is not one the hub may call (or does not resolve); the message says
    which and why."""


async def resolve(host: str, port: int) -> list[str]:
    """The system resolver's addresses for ``host``."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _non_public(address: str) -> str | None:
    """What kind of address ``address`` is when it is not a public one; ``None`` for public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, test in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("unspecified", ip.is_unspecified),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
    ):
        if test:
            return kind
    return None if ip.is_global else "non-public"


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: ``url`` as subscribed, and the checked ``address`` to connect
    to (``None``: let the client resolve, as when private addresses are allowed)."""

    url: httpx.URL
    address: str | None = None

    @property
    def connect_url(self) -> httpx.URL:
        return self.url if self.address is None else self.url.copy_with(host=self.address)

    @property
    def headers(self) -> dict[str, str]:
        """``Host`` of the subscribed URL, when connecting to an address."""
        return {} if self.address is None else {"Host": self.url.netloc.decode("ascii")}

    @property
    def extensions(self) -> dict[str, str]:
        """TLS's server name (and so the certificate's check) stays the subscribed host."""
        if self.address is None or self.url.scheme != "https":
            return {}
        return {"sni_hostname": self.url.raw_host.decode("ascii")}


@dataclass(frozen=True)
class TargetPolicy:
    allow_private: bool = False
    """Whether loopback, private and link-local receivers are allowed (on premises, tests)."""
    resolver: Resolver = resolve

    def check(self, url: str) -> httpx.URL:
        """``url`` parsed, or :class:`InvalidRequest` (field ``url``) saying what is wrong."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, ValueError) as exc:
            raise InvalidRequest(f"url: not a valid URL ({exc})", field="url") from None
        if parsed.scheme not in ("http", "https"):
            raise InvalidRequest("url: must start with http:// or https://", field="url")
        host = parsed.raw_host.decode("ascii", "replace")
        if not host:
            raise InvalidRequest("url: has no host", field="url")
        if parsed.userinfo:
            raise InvalidRequest(
                "url: must not carry credentials (user:password@); receivers check the "
                "X-Chat4All-Signature header instead",
                field="url",
            )
        if _address(host) is None and not _HOST.match(host):
            raise InvalidRequest(f"url: {host!r} is not a valid host name", field="url")
        if not self.allow_private:
            kind = _kind_of_literal(host)
            if kind is not None:
                raise InvalidRequest(
                    f"url: {host} is {_a(kind)} address; webhooks go to public addresses unless "
                    f"{_ALLOW} is set",
                    field="url",
                )
        return parsed

    async def checked(self, url: str) -> Target:
        """At delivery: ``url`` parsed and, unless private addresses are allowed, its host
        resolved to public addresses only (the first one is where to connect); else
        :class:`UnsafeTarget`."""
        try:
            parsed = self.check(url)
        except InvalidRequest as exc:
            raise UnsafeTarget(str(exc)) from None
        if self.allow_private:
            return Target(parsed)
        host = parsed.raw_host.decode("ascii")
        if _address(host) is not None:
            return Target(parsed)  # a literal address was checked above
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            addresses = await self.resolver(host, port)
        except OSError as exc:
            raise UnsafeTarget(f"cannot resolve {host}: {exc}") from None
        if not addresses:
            raise UnsafeTarget(f"cannot resolve {host}: no address")
        for address in addresses:
            kind = _non_public(address)
            if kind is not None:
                raise UnsafeTarget(
                    f"{host} resolves to {address}, {_a(kind)} address; refused unless {_ALLOW} "
                    "is set"
                )
        return Target(parsed, addresses[0])


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _address(host: str) -> str | None:
    """``host`` when it is an IP address literal (brackets removed), else ``None``."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        return None
    return bare


def _kind_of_literal(host: str) -> str | None:
    """The kind of a non-public host known without DNS: an address literal, or localhost."""
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return "loopback"
    address = _address(host)
    return _non_public(address) if address is not None else None
