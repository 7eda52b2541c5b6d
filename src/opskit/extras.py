"""A product's console script on a host without the product's extra: one line naming the extra.

Both products ship in one distribution (``tgstream-chat4all``) and both console scripts are
installed with it, but each product's own dependencies come with its extra
(``pip install 'tgstream-chat4all[tgstream]'``). :func:`require_extra` runs before the product's
CLI is imported: a host without the extra gets the ``pip install`` line and the product's
documented exit code, never an ``ImportError`` traceback.

What the extra holds is read from the installed distribution's metadata (pyproject.toml is the
one list). Only standard-library imports here: this runs before anything else is importable.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from typing import Final

__all__ = ["DISTRIBUTION", "missing_requirements", "require_extra"]

DISTRIBUTION: Final = "tgstream-chat4all"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def missing_requirements(extra: str, distribution: str = DISTRIBUTION) -> list[str]:
    """The requirements of ``distribution[extra]`` that are not installed, by name.

    Only the requirements the extra needs on every platform count (a marker of ``extra == ...``
    alone). Without the distribution's metadata (the sources on ``PYTHONPATH`` and nothing
    installed) there is nothing to compare with: ``[]``.
    """
    try:
        requires = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return []
    only_extra = re.compile(rf"""\s*\(?\s*extra\s*==\s*["']{re.escape(extra)}["']\s*\)?\s*""")
    missing = []
    for requirement in requires:
        spec, _, marker = requirement.partition(";")
        name = _NAME.match(spec.strip())
        if name is None or not only_extra.fullmatch(marker):
            continue
        try:
            metadata.distribution(name.group(0))
        except metadata.PackageNotFoundError:
            missing.append(name.group(0))
    return missing


def require_extra(
    product: str, extra: str, exit_code: int, distribution: str = DISTRIBUTION
) -> None:
    """Exit with ``exit_code`` and one line on stderr when ``extra`` is not installed."""
    missing = missing_requirements(extra, distribution)
    if missing:
        sys.stderr.write(
            f"error: {product} needs the [{extra}] extra, which is not installed here "
            f"(missing: {', '.join(missing)}); install it with: "
            f"{sys.executable} -m pip install '{distribution}[{extra}]'\n"
        )
        raise SystemExit(exit_code)
