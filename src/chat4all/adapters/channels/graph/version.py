"""The Graph API version in every path: ``v{N}.0`` (v25.0 and v26.0 are current)."""

from __future__ import annotations

import re
from typing import Final

from chat4all.errors import InvalidRequest

__all__ = ["VERSION", "DEFAULT_VERSION", "check_version"]

VERSION: Final = re.compile(r"v[1-9][0-9]*\.0")
"""A Graph API version as it appears in a path (the simulators accept any of them)."""

DEFAULT_VERSION: Final = "v25.0"


def check_version(value: str, field: str = "API_VERSION") -> str:
    """``value`` when it is a Graph API version, else an :class:`InvalidRequest` naming
    ``field``."""
    if not VERSION.fullmatch(value):
        raise InvalidRequest(
            f"{field}: {value!r} is not a Graph API version; write it as v{{N}}.0, "
            f"e.g. {DEFAULT_VERSION}",
            field,
        )
    return value
