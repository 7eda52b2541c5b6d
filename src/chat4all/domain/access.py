"""The access model: who a caller is (a :class:`Principal`: a key of one tenant with one
:class:`Role`) and what each role may do. Storage keeps the keys (``KeyRing``); this module
only knows their shape.

A key reads ``c4a_<id>_<secret>``: ``id`` finds the stored key, the secret is checked against
its hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from chat4all.errors import AuthError

__all__ = ["Role", "Principal", "ROLE_CAN", "PresentedKey", "parse_key", "format_key"]

_PREFIX: Final = "c4a"


class Role(StrEnum):
    ADMIN = "admin"
    SENDER = "sender"
    READER = "reader"


ROLE_CAN: Final = {
    Role.ADMIN: frozenset({"send", "read", "admin"}),
    Role.SENDER: frozenset({"send", "read"}),
    Role.READER: frozenset({"read"}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    tenant: str
    role: Role

    def can(self, action: str) -> bool:
        return action in ROLE_CAN[self.role]


@dataclass(frozen=True, slots=True)
class PresentedKey:
    """A key as a caller presented it, split into the id that finds it and its secret."""

    key_id: str
    secret: str


def parse_key(presented: str | None) -> PresentedKey:
    """The parts of a presented key; :class:`AuthError` when there is none or it is malformed."""
    if not presented:
        raise AuthError("no API key: send it as 'Authorization: Bearer <key>'")
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != _PREFIX or not parts[1] or not parts[2]:
        raise AuthError("malformed API key (expected c4a_<id>_<secret>)")
    return PresentedKey(parts[1], parts[2])


def format_key(key_id: str, secret: str) -> str:
    """The key a caller presents for ``key_id`` and ``secret`` (what :func:`parse_key` reads)."""
    return f"{_PREFIX}_{key_id}_{secret}"
